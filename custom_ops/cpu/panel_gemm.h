// GEMM for the plain (non-transposed) view: Y[m, n] = alpha * sum_k A[m, k] W[k, n] where the
// rows of view(W) are contiguous along n. W is read in column panels and multiplied in place
// (broadcast A, vector W), so unlike a BLAS call nothing is packed: W is streamed from memory
// once, which is what matters when A has few rows.
#pragma once

#include <cstdint>

#include "cpu/element.h"

namespace icl::cpu {

// True when PanelGemm computes m rows of A against k rows of W row_bytes apart in axpy form:
// Y's rows stay in L1 while W's rows stream past in long runs, each row of W read once per
// pass (see AxpyRows in panel_gemm_impl.h). One or two rows always; three or four when W
// spans at least `from_bytes` (per ISA: Simd::kAxpyFromBytes), where the runs, which the
// hardware prefetcher follows, matter more than the register tile of the panel walk, whose
// 256-byte pieces of W are each in another page (K=768, N=32000, one core, M=4: 14 ms in axpy
// form against 27 in panels, measured with the panel walk over all of K). AVX2 walks the
// panels in blocks of K (BlockedPanels in panel_gemm_impl.h), and against that walk its
// traits re-tune the choice (panel_gemm_avx2.cc): three or four rows also where W has at most
// `up_to_k` rows (0: never) a page (4 KB) or more apart, whatever its size, and never where
// W's rows are `below_row_bytes` or more apart.
constexpr int64_t kAxpyMaxRows = 4;
inline bool AxpyForm(int64_t m, int64_t k, int64_t row_bytes, int64_t from_bytes,
                     int64_t up_to_k, int64_t below_row_bytes) {
  if (m <= 2) return true;
  if (m > kAxpyMaxRows || row_bytes >= below_row_bytes) return false;
  return k * row_bytes >= from_bytes || (k <= up_to_k && row_bytes >= 4096);
}

// W's rows at least this many bytes apart are wide: the panel walk takes them in shorter
// blocks of K (BlockedPanels in panel_gemm_impl.h), and AVX2 never reads them in axpy form
// for three or four rows of A (panel_gemm_avx2.cc, kAxpyBelowRowBytes).
constexpr int64_t kWideBlockRowBytes = int64_t{16} << 10;

// AxpyForm with the instruction set PanelGemm uses, for k rows of W row_bytes apart.
bool PanelGemmAxpy(int64_t m, int64_t k, int64_t row_bytes);

// Where an instruction set gains from the threads splitting K beyond the rule every one shares
// (SplitsK in matmul.cc), for a float32 W read in slices of whole rows: rows of A 1 to
// narrow_max_rows where W's rows are narrow (kSplitKNarrowRowBytes there; beyond kAxpyMaxRows
// rows, walked in panels, only from kPanelSplitFromK rows of W), and 1 to stream_max_rows where
// W streams from memory and its rows are wider than a task (0: never). The traits choose them,
// as measured (panel_gemm_avx2.cc, panel_gemm_avx512.cc).
struct KSplitRule {
  int64_t narrow_max_rows = 0;
  int64_t stream_max_rows = 0;
};
KSplitRule PanelGemmKSplitRule();

// y[i * ldy + j] = alpha * sum_k a[i * lda + k] * W[k, j] for i < m, j < n, where W[k, j] is
// element k * ldw + j of `w` (of type w_type), with the widest instruction set the CPU has.
// Single-threaded: callers split the columns. With `axpy`, up to kAxpyMaxRows rows of A are
// computed in axpy form whatever AxpyForm says (SplitK's tasks of whole rows of a narrow
// W, matmul.cc).
void PanelGemm(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
               ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy,
               bool axpy = false);

// Columns of the panels PanelGemm multiplies m rows of A by (m > kAxpyMaxRows), with the
// instruction set PanelGemm uses: a block of columns that is a multiple of it leaves no
// narrower panel, whose tile computes slower (AVX-512, 8 rows: 48 columns; see matmul.cc).
int64_t PanelGemmColumns(int64_t m);

// One instantiation per instruction set (panel_gemm_<isa>.cc); PanelGemm picks one.
void PanelGemmScalar(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                     ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y,
                     int64_t ldy, bool axpy);
void PanelGemmAvx2(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                   ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy,
                   bool axpy);
void PanelGemmAvx512(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                     ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y,
                     int64_t ldy, bool axpy);

int64_t PanelGemmScalarColumns(int64_t m);
int64_t PanelGemmAvx2Columns(int64_t m);
int64_t PanelGemmAvx512Columns(int64_t m);

bool PanelGemmScalarAxpy(int64_t m, int64_t k, int64_t row_bytes);
bool PanelGemmAvx2Axpy(int64_t m, int64_t k, int64_t row_bytes);
bool PanelGemmAvx512Axpy(int64_t m, int64_t k, int64_t row_bytes);

KSplitRule PanelGemmScalarKSplitRule();
KSplitRule PanelGemmAvx2KSplitRule();
KSplitRule PanelGemmAvx512KSplitRule();

}  // namespace icl::cpu
