// WideGemm for AVX-512F: 16 floats a vector, A tiles of 64 rows; 28 accumulators at most
// (16 x 1 measured better than 24 x 1; 20 x 1 spills. Two-vector tiles (M=17..32) with 14
// rows of W, not 12: kernel harness, one core, W and A in L2, M=32, K=768: 110-114 against
// 103-106 GFLOP/s, of a measured FMA peak of 118; 4 x 7 and 3 x 9 measured no faster than
// 4 x 6 and 3 x 8).
// Also measured and not kept (in ORT, one thread, K=N=768, W hot, rdtsc around each call of
// the kernel's Compute, two builds alternated call by call, lowest decile, loaded machine;
// the same build in both places differed by 0.6-1.4%): StoreTile transposing 4 x 16 blocks
// in registers (AVX2's kStore4) M=16 0.99, M=32 1.01, M=64 1.04, M=256 1.04 of element by
// element; kUnroll 4 M=16 1.03, M=64 1.04, M=256 1.04; one-vector tiles of 12 rows of W
// M=16 1.00, K=768 N=3072 M=16 1.01.
// Measured for M=64-256 and not kept (largem512; in ORT, one thread, transposed, loaded
// machine, alternated with 9ab09d6 run by run in one process, median (p10-p90)): groups of one
// 64-row tile of A against blocks of 48 rows of W from 512 KB of packed A (TryGroups; kernel
// alone, one core: K=768 N=32000 M=256 0.96, K=N=768 M=256 0.96-1.00), in ORT M=256 K=N=768
// 0.99 (0.94-1.04), K=768 N=32000 1.00 (0.97-1.01); A packed by 16 x 16 transposes in zmm
// registers, 16 rows along K at a time (alone, A flushed from the caches, M=256 K=768: 115
// against 174 us; A in cache 28 against 30), in ORT M=256 K=N=768 0.96-0.97, but with that
// code in this file K=768 N=32000 M=64 (which runs no code of it) 1.05-1.06 (1.00-1.11)
// while 9ab09d6 rebuilt here ran 1.00: the placement of the code, not located further (the
// start of the hot loops mod 64 unchanged); StoreTile by 16 x 16 transposes and masked
// stores: kernel alone 0.99-1.00.
#include <immintrin.h>

// GCC 12 flags the deliberately undefined lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_ps) as uninitialised once they are inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // clang (the wheel's compiler) has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "cpu/wide_gemm.h"

#define ICL_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))
#define ICL_ISA_NS avx512

namespace icl::cpu::avx512 {

struct Simd {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kTileLanes = 4;
  static constexpr int kWRows[4] = {16, 14, 8, 6};
  // Rows of W that alias, against a tile of two vectors: blocks of 4 rows, K in 2 runs (16
  // accumulators; wide_gemm_impl.h, RunSplit).
  static constexpr int kSplitRows = 4;
  static constexpr int kSplitRuns = 2;
  // Y staged 8 blocks of W rows at a time where its rows alias in L1 (from 9 rows of A: more
  // than one L1 set holds; StageY in wide_gemm_impl.h, with the measurements).
  static constexpr int kStageBlocks = 8;
  static constexpr int64_t kStageFromRows = 9;
  static constexpr bool kStageAliasedOnly = true;
  static constexpr int kUnroll = 1;
  // A larger than 1 MB (M=128 at K=3072: 1.5 MB; M=256 at K=768 and above) in groups of tiles
  // of at most about 576 KB (one tile of 64 rows at K=3072) against blocks of 48 rows of W
  // (TryGroups in wide_gemm_impl.h): at once, A streamed from L3 on every block of W's rows.
  // Intel Xeon (2 MB L2), in ORT, alternated, median of 12-15 runs, groups / at once: K=3072,
  // N=768 M=128 0.85 one thread, 0.91 two, M=256 0.59 and 0.55; K=768, N=3072 and 32000
  // M=256 0.94-1.01. (Measured at once only before, on an AMD EPYC with 1 MB of L2.)
  static constexpr int64_t kGroupBytes = 576 * 1024;
  static constexpr int64_t kGroupFromBytes = 1024 * 1024;
  static constexpr int kGroupWRows = 48;
  // K in chunks from 33 rows of A (TryChunks in wide_gemm_impl.h, with the measurements from
  // 65 rows). One tile of A, in ORT, 3 runs of each build alternated, 2 placements, median
  // ICL/ORT in chunks / whole: M=48 and 64 0.86-0.99 (K=3072, N=768 0.86-0.89, K=768, N=32000
  // 0.88-0.95); from 17 rows (tiles of two vectors) / from 33: M=20-32 1.04-1.22 at K=768,
  // N=768 and 3072 (K=3072, N=768, where RunSplit runs either way, and N=32000: 0.85-1.03,
  // the noise of those cells). With chunks TryGroups takes a float32 W only below 33 rows, in
  // one tile of A over 1 MB (K > 4096).
  static constexpr int64_t kChunkFromRows = 33;
  // And one tile of one vector (M=13-16) against rows of W that alias in L1, which Run copies
  // block by block: in ORT, 3 runs of each build alternated, K=3072, N=768, M=13 and 16, median
  // ICL/ORT in chunks / copied: one thread 0.85-0.86, two 0.92-0.93 (K=N=768, unchanged code:
  // 0.90-1.00).
  static constexpr bool kChunkAliasedNarrow = true;
  // StoreTile element by element.
  static constexpr bool kStore4 = false;
  ICL_TARGET static V Zero() { return _mm512_setzero_ps(); }
  ICL_TARGET static V Load(const float* p) { return _mm512_loadu_ps(p); }
  ICL_TARGET static V Broadcast(float v) { return _mm512_set1_ps(v); }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  ICL_TARGET static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  ICL_TARGET static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  // dst[j * ldd + i] = alpha * src[i * lds + j] for i, j < 16: 16 x 16 in registers.
  ICL_TARGET static void StoreTransposed(const float* src, int64_t lds, float alpha, float* dst,
                                         int64_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // Within each 128-bit lane: row i's lane holds elements 4 q .. 4 q + 3 of column i % 4 ...
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
      r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    // ... then the 128-bit lanes regrouped in two rounds.
    for (int h = 0; h < 16; h += 8) {
      for (int i = 0; i < 4; ++i) {
        t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
        t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
      }
    }
    const __m512 s = _mm512_set1_ps(alpha);
    for (int i = 0; i < 8; ++i) {
      _mm512_storeu_ps(dst + i * ldd,
                       _mm512_mul_ps(s, _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88)));
      _mm512_storeu_ps(dst + (i + 8) * ldd,
                       _mm512_mul_ps(s, _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD)));
    }
  }
};

}  // namespace icl::cpu::avx512

#include "cpu/wide_gemm_impl.h"

namespace icl::cpu {

void WideGemmAvx512(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                    float alpha, float* y, int64_t ldy) {
  avx512::Dispatch(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
