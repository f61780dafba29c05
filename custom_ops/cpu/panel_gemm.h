// GEMM for the plain (non-transposed) view: Y[m, n] = alpha * sum_k A[m, k] W[k, n] where the
// rows of view(W) are contiguous along n. W is read in column panels and multiplied in place
// (broadcast A, vector W), so unlike a BLAS call nothing is packed: W is streamed from memory
// once, which is what matters when A has few rows.
#pragma once

#include <cstdint>

#include "cpu/element.h"

namespace icl::cpu {

// y[i * ldy + j] = alpha * sum_k a[i * lda + k] * W[k, j] for i < m, j < n, where W[k, j] is
// element k * ldw + j of `w` (of type w_type), with the widest instruction set the CPU has.
// Single-threaded: callers split the columns.
void PanelGemm(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
               ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy);

// One instantiation per instruction set (panel_gemm_<isa>.cc); PanelGemm picks one.
void PanelGemmScalar(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                     ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y,
                     int64_t ldy);
void PanelGemmAvx2(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                   ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy);
void PanelGemmAvx512(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                     ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y,
                     int64_t ldy);

}  // namespace icl::cpu
