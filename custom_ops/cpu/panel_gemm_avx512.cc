// PanelGemm for AVX-512F: 16 floats a vector; 6 rows of A x 4 vectors = 24 accumulators of
// 32 zmm, or 8 x 3 when M is a multiple of 8 (a few rows of A: axpy form).
#include <immintrin.h>

// GCC 12 flags the deliberately undefined lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_ps) as uninitialised once they are inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // clang (the wheel's compiler) has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "cpu/panel_gemm.h"
#include "cpu/panel_gemm_copy.h"

#define ICL_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))
#define ICL_ISA_NS avx512

namespace icl::cpu::avx512 {

// The first row tile's copy of a panel: PanelCopyAvx512, as measured here.
struct Simd : PanelCopyAvx512 {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kRows = 6;
  static constexpr int kLanes = 4;
  static constexpr int kAltRows = 8;
  static constexpr int kAltLanes = 3;
  // No L1 prefetch and no merged last tile: not measured on AVX-512 (kept as tuned).
  static constexpr int64_t kL1AheadRows = 0;
  static constexpr bool kMergeLastTile = false;
  // The panels walked in blocks of 128 rows of W up to 64 rows of A, of 64 where W's rows are
  // 16 KB or more apart, there from 5 rows of A and in blocks of 32 up to 16 (BlockedPanels in
  // panel_gemm_impl.h, AVX2's block sizes before its blocks of 32; AVX-512 had walked all of
  // K, measured on an AMD EPYC). Intel Xeon (2 MB L2), in ORT, alternated, 3 placements,
  // median of 15-30 runs, blocks / all of K, one and two threads: K=768, N=3072 M=8 0.63 and
  // 0.75, M=16 0.76 and 0.81, M=32 0.77 and 0.85, M=64 0.81 and 0.84; K=3072, N=768 (the
  // slices of SplitK) M=8-32 0.92-0.98; K=768, N=32000 M=32 0.74 and 0.77, M=64 0.87 and
  // 0.82; K=N=768 0.93-1.03.
  // Blocks of 256 rows: 1.00-1.17 against 128. Blocks of 32 (AVX2's): PanelGemm alone, one
  // core, W cold, fastest of 200, time / blocks of 128, K=768: N=768 M=8-32 0.98-1.02, M=64
  // 1.14; N=3072 M=8 1.03, M=32 1.27, M=64 1.29; N=32000 (64 -> 32) M=32 1.03, M=64 1.06.
  // Wide rows from 5 rows of A (kWideBlockFromRows), and up to 16 rows in blocks of 32
  // (kWideFew*): in ORT, K=768, N=32000, 3 runs of each build alternated, 2 placements,
  // medians of ICL/ORT, blocks of 32 / all of K: one thread M=5 0.71, M=6 0.67, M=8 0.59, M=9
  // 0.63, M=12 0.67, M=16 0.65; two threads 0.71, 0.69, 0.62, 0.64, 0.69, 0.65 (ICL/ORT
  // 1.10-1.36 -> 0.70-0.88). Blocks of 16 as fast (M=9-16); blocks of 64 had measured no
  // faster than all of K (M=8 1.02 and 1.12, M=16 0.99 and 1.04). Measured and not kept: three
  // and four rows in blocks of 32 rather than in axpy form (0.94-1.05); five to eight rows in
  // axpy form, two rows of W a pass (0.67-0.77 of all of K, blocks 0.59-0.71); blocks of 32
  // also at M=32-64 (1.00-1.13 against 64) or for rows of W less than 16 KB apart (K=N=768,
  // K=768, N=3072, K=3072, N=768, M=5-16: 0.97-1.20 against 128). Beyond 64 rows, up
  // to 256 (wide rows too, in blocks of 64), where the panels had been walked over all of K,
  // each copied by its first row tile (CopyingPanel): in ORT, one and two threads, 3 runs of
  // each build alternated, 2 placements, medians, blocks / all of K: K=768, N=3072 M=96-128
  // 0.88-0.94, M=256 0.95-0.96; K=3072, N=768 M=96-256 0.90-0.97; K=768, N=32000 M=96-128
  // 0.89-0.95, M=256 1.01-1.03; K=N=768 1.01-1.03 (the transposed view's cells, unchanged
  // code: 0.96-1.05). (Measured earlier, wide rows in blocks of 128: one thread, N=32000
  // M=128 1.02, M=256 1.10.) Beyond 256 rows not measured: all of K, as before.
  static constexpr int64_t kBlockRows = 128;
  static constexpr int kBlockAheadPanels = 4;
  static constexpr int64_t kBlockMaxRows = 256;
  static constexpr int64_t kWideBlockRows = 64;
  static constexpr int64_t kWideBlockMaxRows = 64;
  static constexpr int64_t kWideBlockFromRows = 5;
  static constexpr int64_t kWideFewBlockRows = 32;
  static constexpr int64_t kWideFewMaxRows = 16;
  // No other block size for a large A (AVX2's kBigABlockRows): blocks of 128 up to 256 rows.
  static constexpr int64_t kBigABlockRows = 0;
  static constexpr int64_t kBigAMaxRows = 0;
  static constexpr int64_t kBigAFromBytes = 0;
  // Three or four rows of A in axpy form from 4 MB of W (K=3072, N=768 and K=768, N=3072:
  // 9.4 MB): there the panel walk, whose next-panel prefetch reaches a whole panel ahead (768 KB
  // at K=3072), read W at 7-10 GB/s from memory, the axpy rows at 16-19 (kernel alone, one core,
  // loaded machine, lowest of 40 runs, ms panels -> axpy, W cold: 3072x768 M=4 1.00-1.07 ->
  // 0.56 in tasks of 512 columns, 0.71-0.83 in tasks of 192; 768x3072 M=4 0.99-1.32 -> 0.55-0.57,
  // M=3 0.95-1.27 -> 0.50-0.60; W warm: 3072x768 M=4 0.31-0.36 -> 0.26-0.29, 768x3072 M=4
  // 0.22 -> 0.19). K=N=768 (2.4 MB, stays in L2/L3) keeps the panel walk.
  static constexpr int64_t kAxpyFromBytes = int64_t{4} << 20;
  // The threads split K (SplitsK in matmul.cc) where AVX2's traits say so
  // (panel_gemm_avx2.cc): one to four rows of A and a float32 W whose rows are narrow, one or
  // two rows and a float32 W that streams from memory with rows wider than a task. In ORT, the
  // choice switched run by run in one session (ICL's W shared by both choices, each run right
  // after a run of ORT's prepacked MatMul, so that neither inherits a W the other has just
  // warmed), load 0.3-0.7, 3 placements, medians of 120 rounds (50 at N=32000), ICL / the ORT
  // run before it, by N -> split: K=3072, N=768, one thread M=1 0.97 -> 0.70, M=2 0.96 -> 0.76,
  // M=3 1.06 -> 0.80, M=4 1.06 -> 0.72; two threads 1.09 -> 0.77, 1.15 -> 0.88, 1.11 -> 0.66,
  // 1.22 -> 0.83; K=N=768 one thread M=3 1.09 -> 0.99, M=4 0.96 -> 0.91, two threads 0.99 ->
  // 0.90, 1.00 -> 0.83; K=768, N=32000 one thread M=1 0.83 -> 0.78, M=2 0.94 -> 0.85, two
  // threads 0.92 -> 0.87, 0.94 -> 0.87. In bench_matmul against the library before
  // (results/matmul_avx512split_vs_a3c9976.md, separate sessions): K=3072, N=768 M=3-4
  // 0.79-0.86, M=1-2 0.91-0.96.
  // Beyond four rows, up to 64 walked in panels where W has 1024 rows or more (kPanelSplitFromK,
  // matmul.cc, where the measurements are).
  static constexpr int64_t kSplitKNarrowMaxRows = 64;
  static constexpr int64_t kSplitKStreamMaxRows = 2;
  ICL_TARGET static V Zero() { return _mm512_setzero_ps(); }
  ICL_TARGET static V Broadcast(float v) { return _mm512_set1_ps(v); }
  ICL_TARGET static V Load(const float* p) { return _mm512_loadu_ps(p); }
  ICL_TARGET static V LoadW(const float* p) { return _mm512_loadu_ps(p); }
  ICL_TARGET static V LoadW(const Ort::Float16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  ICL_TARGET static V LoadW(const Ort::BFloat16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m512i b = _mm512_cvtepu16_epi32(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
  }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  ICL_TARGET static V Scale(V v, float s) { return _mm512_mul_ps(v, _mm512_set1_ps(s)); }
  ICL_TARGET static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
};

}  // namespace icl::cpu::avx512

#include "cpu/panel_gemm_impl.h"

namespace icl::cpu {

void PanelGemmAvx512(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                     ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y,
                     int64_t ldy, bool axpy) {
  avx512::Dispatch(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy, axpy);
}

int64_t PanelGemmAvx512Columns(int64_t m) { return avx512::Columns(m); }

bool PanelGemmAvx512Axpy(int64_t m, int64_t k, int64_t row_bytes) {
  return avx512::Axpy(m, k, row_bytes);
}

KSplitRule PanelGemmAvx512KSplitRule() { return avx512::SplitRule(); }

}  // namespace icl::cpu
