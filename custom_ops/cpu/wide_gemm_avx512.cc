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
  // Packed A of more than 512 KB (M > 128 at K=768) one tile at a time against blocks of 48
  // rows of W (TryGroups in wide_gemm_impl.h). Kernel harness (pack + WideGemm in tasks as
  // matmul.cc, one core, loaded machine, lowest of 3-15 per run, 4-6 alternated rounds, median
  // ratio grouped / all tiles at once): K=768, N=32000, M=256 0.96 (blocks of 48 rows of W;
  // 96 and 24: 1.00 and 1.01 of 48); N=3072 and 768, M=256 0.98-1.00. Groups from 256 KB
  // (M=128) measured 1.00 in the harness, and in ORT, one thread, K=768, N=3072, 60 rounds,
  // min-ratio to ORT 1.030 against 1.008 for all at once. In ORT (one thread, transposed,
  // loaded machine, alternated with 9ab09d6 run by run, median (p10-p90)): M=256 K=N=768 0.99
  // (0.94-1.04), K=768 N=32000 1.00 (0.97-1.01); M=64 and 128 (not grouped) 0.99 and 1.00.
  // Also measured and not kept: A packed by 16 x 16 blocks in zmm registers, 16 rows along K
  // at a time (pack alone, A flushed from the caches, M=256 K=768: 115 against 174 us; with A
  // in cache 28 against 30): in ORT M=256 K=N=768 0.96-0.97 of 9ab09d6, but with that code in
  // this file K=768 N=32000 M=64 1.05-1.06 (1.00-1.11), also with the new pack not called, so
  // from where the code lands rather than from what runs (the hot loops' alignment mod 64 was
  // unchanged); StoreTile by 16 x 16 transposes and masked stores (no faster: 0.99-1.00).
  static constexpr int64_t kGroupBytes = 192 * 1024;
  static constexpr int64_t kGroupFromBytes = 512 * 1024;
  static constexpr int kGroupWRows = 48;
  // StoreTile element by element.
  static constexpr bool kStore4 = false;
  ICL_TARGET static V Zero() { return _mm512_setzero_ps(); }
  ICL_TARGET static V Load(const float* p) { return _mm512_loadu_ps(p); }
  ICL_TARGET static V Broadcast(float v) { return _mm512_set1_ps(v); }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  ICL_TARGET static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  ICL_TARGET static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
};

}  // namespace icl::cpu::avx512

#include "cpu/wide_gemm_impl.h"

namespace icl::cpu {

void WideGemmAvx512(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                    float alpha, float* y, int64_t ldy) {
  avx512::Dispatch(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
