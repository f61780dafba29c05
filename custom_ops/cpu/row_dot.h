// Rows of A against rows of W: the kernel of IclMatMul with a transposed view and few rows
// of A, where the work is streaming W from memory once.
#pragma once

#include <cstdint>

#include "cpu/element.h"

namespace icl::cpu {

// y[m * ldy + j] = alpha * sum_k a[m * lda + k] * W_j[k] for m < rows, j < n_end - n_begin,
// where W_j, the row n_begin + j of W, starts at element (n_begin + j) * ldw of `w`.
struct RowDotProblem {
  const float* a = nullptr;
  int64_t lda = 0;
  int64_t rows = 0;  // rows of A
  int64_t k = 0;
  const void* w = nullptr;  // elements of type w_type
  int64_t ldw = 0;
  ElemType w_type = ElemType::kFloat;
  float alpha = 1.0f;
  float* y = nullptr;  // column j of y holds W row n_begin + j
  int64_t ldy = 0;
};

// Computes W rows [n_begin, n_end) with the widest instruction set the CPU has.
void RowDot(const RowDotProblem& p, int64_t n_begin, int64_t n_end);

// One instantiation per instruction set (row_dot_<isa>.cc); RowDot picks one.
void RowDotScalar(const RowDotProblem& p, int64_t n_begin, int64_t n_end);
void RowDotAvx2(const RowDotProblem& p, int64_t n_begin, int64_t n_end);
void RowDotAvx512(const RowDotProblem& p, int64_t n_begin, int64_t n_end);

}  // namespace icl::cpu
