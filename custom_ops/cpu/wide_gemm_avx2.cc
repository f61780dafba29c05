// WideGemm for AVX2 + FMA: 8 floats a vector, A tiles of 24 rows (3 vectors), so that 12
// accumulators, the A tile and the broadcast fit the 16 ymm registers without spilling.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "cpu/transpose8.h"
#include "cpu/wide_gemm.h"

#define ICL_TARGET __attribute__((target("avx2,fma,f16c")))
#define ICL_ISA_NS avx2

namespace icl::cpu::avx2 {

struct Simd {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kTileLanes = 3;
  static constexpr int kWRows[3] = {12, 6, 4};
  // No RunSplit: its 16 accumulators need more registers, and 2 rows x 2 runs took 1.8 times
  // as long as the copy (M=16, K=3072, N=768, one core).
  static constexpr int kSplitRows = 0;
  static constexpr int kSplitRuns = 0;
  // From kStageFromRows rows of A, where Y's rows are a multiple of 4 KB apart (N=3072:
  // kStageAliasedOnly), Y's columns are staged 4 blocks of W rows (one
  // cache line of Y per row of A at 4 rows a block, the blocks from 64 rows of A) at a time and
  // then copied into Y (StageY in wide_gemm_impl.h), and Micro takes kUnroll steps of K per
  // prefetch step: written in place, each 4-row block of W wrote 16 bytes into every row of Y
  // (rows 12 KB apart at N=3072, all in one L1 set), and the prefetch step's branches ran on
  // every step of K. In ORT, one thread, thread CPU time, alternated with 9227f26 (loaded
  // machine), both together, median ICL/ORT before -> after: M=256 K=768 N=3072 1.37 -> 1.21;
  // M=64 K=768 N=3072 1.21 -> 1.08; M=128 K=3072 N=768 1.30 -> 1.16; M=32 K=768 N=32000
  // 1.30 -> 1.04 (benchmarks/results/matmul_avx2large_vs_9227f26.md). A prefetch of the A
  // tile 384-1024 bytes ahead (MLAS prefetches its packed B), A's tiles in groups of 384 KB
  // (W re-read per group) and A tiles of 16 rows for M a multiple of 16 measured no faster.
  // Staging from 64 rows: fewer rows of Y were not measured. Staged whatever N (as first
  // committed), N=768 and 32000 measured 1-4% slower than in place: in ORT, one thread, thread
  // CPU time, 15 rounds alternated (loaded machine), median ICL/ORT staged -> in place:
  // K=768 N=768 M=64 1.039 -> 0.991, M=128 1.063 -> 1.026, M=256 1.082 -> 1.104 and 1.118 ->
  // 1.140; N=32000 M=64 1.044 -> 1.009 and 1.001 -> 0.989, M=128 1.076 -> 1.051, M=256 1.057
  // -> 1.019; K=3072 N=768 M=64/128/256 1.035/1.177/1.102 -> 1.014/1.174/1.077 (kernel
  // harness, lowest of 6-12 runs, in place / staged: 0.95-0.99, two of 13 1.02 and 1.18).
  static constexpr int kStageBlocks = 4;
  static constexpr int64_t kStageFromRows = 64;
  static constexpr bool kStageAliasedOnly = true;
  static constexpr int kUnroll = 4;
  // A last tile of one vector after wider ones walks K in two runs side by side (MicroSplit:
  // 8 accumulators with the 4 rows of W of three-vector tiles, 12 with the 6 of two-vector
  // ones, not 4 or 6): see WideGemmAvx2NarrowLast below.
  static constexpr bool kNarrowSplit = true;
  // A larger than 512 KB (M=256 at K=768: 786 KB) in groups of tiles of at most about 288 KB,
  // against blocks of 48 rows of W (whole blocks of 4 and of 6 rows, and of 16 columns of the
  // stage): TryGroups in wide_gemm_impl.h. Kernel harness, one core, loaded machine, 4-8
  // rounds alternated, lowest time against without: M=256, K=768, N=768 0.968, N=3072 0.973,
  // N=32000 0.987; M=128 (393 KB) in two groups was 1.01-1.03, so it stays whole.
  static constexpr int64_t kGroupBytes = 288 * 1024;
  static constexpr int64_t kGroupFromBytes = 512 * 1024;
  static constexpr int kGroupWRows = 48;
  // K in chunks from 65 rows of A (TryChunks in wide_gemm_impl.h, with the measurements):
  // M=64 in chunks measured 0.95-1.01 of whole in ORT, but 1.05-1.06 at K=768, N=32000 (one
  // and two threads, two runs each); kernel harness, one core, GFLOP/s whole -> in chunks of
  // 384 steps: M=24 100 -> 105, M=32 113 -> 108, M=48 113 -> 110.
  static constexpr int64_t kChunkFromRows = 65;
  static constexpr bool kChunkAliasedNarrow = false;  // not measured with AVX2
  // StoreTile transposes 4 x 8 blocks of the tile's result in registers (element by element it
  // took 4-5% of the GEMM: M=256, K=768, N=768, one core).
  static constexpr bool kStore4 = true;
  ICL_TARGET static void Store4(const float* out, int64_t ld, int64_t valid, float alpha, float* y,
                                int64_t ldy) {
    const __m256 s = _mm256_set1_ps(alpha);
    // Reads 8 columns of out at a time, past `valid` in a last tile: those columns are the
    // products of the packed tile's zero rows (PackATile), written by Micro, never stored.
    for (int64_t i0 = 0; i0 < valid; i0 += 8) {
      const __m256 r0 = _mm256_loadu_ps(out + i0), r1 = _mm256_loadu_ps(out + ld + i0);
      const __m256 r2 = _mm256_loadu_ps(out + 2 * ld + i0);
      const __m256 r3 = _mm256_loadu_ps(out + 3 * ld + i0);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      // Column i0 + j of out in lane half j / 4 of u[j % 4].
      const __m256 u[4] = {_mm256_mul_ps(s, _mm256_shuffle_ps(t0, t2, 0x44)),
                           _mm256_mul_ps(s, _mm256_shuffle_ps(t0, t2, 0xEE)),
                           _mm256_mul_ps(s, _mm256_shuffle_ps(t1, t3, 0x44)),
                           _mm256_mul_ps(s, _mm256_shuffle_ps(t1, t3, 0xEE))};
      const int64_t n = std::min<int64_t>(8, valid - i0);
      for (int64_t j = 0; j < n; ++j) {
        const __m128 v = j < 4 ? _mm256_castps256_ps128(u[j]) : _mm256_extractf128_ps(u[j - 4], 1);
        _mm_storeu_ps(y + (i0 + j) * ldy, v);
      }
    }
  }
  ICL_TARGET static V Zero() { return _mm256_setzero_ps(); }
  ICL_TARGET static V Load(const float* p) { return _mm256_loadu_ps(p); }
  ICL_TARGET static V Broadcast(float v) { return _mm256_set1_ps(v); }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  ICL_TARGET static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  ICL_TARGET static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  // dst[j * ldd + i] = alpha * src[i * lds + j] for i, j < 8: 8 x 8 in registers.
  ICL_TARGET static void StoreTransposed(const float* src, int64_t lds, float alpha, float* dst,
                                         int64_t ldd) {
    Transpose8<true>(src, lds, 8, dst, ldd, alpha);
  }
};

}  // namespace icl::cpu::avx2

#include "cpu/wide_gemm_impl.h"

namespace icl::cpu {

// Where the 6 rows of W of the two-vector tiles alias in L1 (RowsAlias: K=3072, rows 12 KB
// apart) and A in tiles of 16 rows would run in groups (TryGroups), Run copies every block of
// W's rows once per group: M=128 in tiles of 16 copied all of W four times. Tiles of 24 rows
// take 4 rows of W, which do not alias, and the last tile of one vector runs as MicroSplit
// (kNarrowSplit). Kernel harness, one core, K=3072, N=768, M=128, loaded machine, least
// disturbed rounds, ms: tiles of 16 6.70/6.75, of 24 + 8 6.23/6.28 (M=120, five tiles of 24:
// 5.42/5.62). Without groups (W copied once) tiles of 16 stay: M=32, K=3072, N=768, in ORT,
// one thread, thread CPU time, 3 x 150 alternated rounds, median ICL/ORT 16 + 16 0.95/0.96/
// 0.90 against 24 + 8 1.01/1.04/1.03.
bool WideGemmAvx2NarrowLast(int64_t m, int64_t k, int64_t w_row_bytes) {
  using avx2::Simd;
  constexpr int64_t kRows = 2 * Simd::kWidth;  // the two-vector tiles
  const int64_t bytes = (m + kRows - 1) / kRows * kRows * k * int64_t{sizeof(float)};
  return w_row_bytes > 0 && bytes > Simd::kGroupFromBytes &&
         avx2::RowsAlias<Simd::kWRows[1]>(w_row_bytes);
}

void WideGemmAvx2(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                  float alpha, float* y, int64_t ldy) {
  avx2::Dispatch(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
