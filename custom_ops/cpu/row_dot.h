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
  // The rows of A as RowDotPack lays them out, or null: then each RowDot call packs them into
  // the calling thread's scratch (one row of A needs no packing).
  const float* packed_a = nullptr;
  // Bytes of the whole of W (every task's rows), which some tiles choose by (among them,
  // whether W streams from memory: StreamsFromMemory in prefetch.h).
  int64_t w_bytes = 0;
};

// Floats that RowDotPack writes for `rows` rows of A of k elements (0 for one row).
int64_t RowDotPackedSize(int64_t rows, int64_t k);

// Lays p's rows of A out for RowDot's tiles (row_dot_impl.h, PackRows) into `out`. Packing
// once per call, rather than in every task, keeps one copy of A in the cache that the
// threads share (two threads on one core's L1, K = N = 768: 8 rows of A packed per task took
// 1.46 times as long as before packing).
void RowDotPack(const RowDotProblem& p, float* out);

// Computes W rows [n_begin, n_end) with the widest instruction set the CPU has.
void RowDot(const RowDotProblem& p, int64_t n_begin, int64_t n_end);

// One instantiation per instruction set (row_dot_<isa>.cc); RowDot picks one.
void RowDotScalar(const RowDotProblem& p, int64_t n_begin, int64_t n_end);
void RowDotAvx2(const RowDotProblem& p, int64_t n_begin, int64_t n_end);
void RowDotAvx512(const RowDotProblem& p, int64_t n_begin, int64_t n_end);
void RowDotPackScalar(const RowDotProblem& p, float* out);
void RowDotPackAvx2(const RowDotProblem& p, float* out);
void RowDotPackAvx512(const RowDotProblem& p, float* out);
int64_t RowDotWidthScalar();
int64_t RowDotWidthAvx2();
int64_t RowDotWidthAvx512();

}  // namespace icl::cpu
