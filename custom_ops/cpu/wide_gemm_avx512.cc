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

#include <algorithm>

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
  // min-ratio to ORT 1.030 against 1.008 for all at once.
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
namespace {

// dst[j * ldd + i] = src[i * lds + j] for i < 16, j < cols (<= 16): the 16 x 16 transpose in
// registers (unpack, shuffle, then two rounds of 128-bit lane shuffles); rows at or beyond
// `rows` read as zero, columns at or beyond `cols` are neither read nor stored.
ICL_TARGET void Transpose16(const float* src, int64_t lds, int64_t rows, int64_t cols,
                            float* dst, int64_t ldd) {
  const __mmask16 in = cols >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << cols) - 1);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(in, src + i * lds) : _mm512_setzero_ps();
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // r[4q + s], 128-bit lane c: rows 4q..4q+3 of column 4c + s.
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int s = 0; s < 4; ++s) {
    const __m512 a0 = _mm512_shuffle_f32x4(r[s], r[4 + s], 0x88);
    const __m512 a1 = _mm512_shuffle_f32x4(r[s], r[4 + s], 0xDD);
    const __m512 b0 = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0x88);
    const __m512 b1 = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0xDD);
    t[s] = _mm512_shuffle_f32x4(a0, b0, 0x88);
    t[4 + s] = _mm512_shuffle_f32x4(a1, b1, 0x88);
    t[8 + s] = _mm512_shuffle_f32x4(a0, b0, 0xDD);
    t[12 + s] = _mm512_shuffle_f32x4(a1, b1, 0xDD);
  }
  for (int j = 0; j < cols; ++j) _mm512_storeu_ps(dst + j * ldd, t[j]);
}

}  // namespace

// Sixteen rows of A at a time along all of K, in blocks of 16 x 16: each of the 16 rows is
// read as one sequential run, which the hardware prefetcher follows, and each store is a whole
// line of the tile. The AVX2 pack's order (16 columns of every row of the tile at a time)
// reads one line from each of 64 rows 3 KB apart at once: M=256, K=768, one core, A flushed
// from the caches, lowest of 200: 174 us against 115 here (A in cache: 30 against 28; a
// prefetch of each row 64-256 floats ahead, or 16 columns of every row at a time with these
// blocks, no faster).
ICL_TARGET void PackATileAvx512(const float* a, int64_t lda, int64_t t, const PackedA& out) {
  constexpr int64_t kW = avx512::Simd::kWidth;
  const int64_t m0 = t * out.tile_rows;
  const int64_t width = std::min(out.tile_rows, (out.m - m0 + kW - 1) / kW * kW);
  const int64_t valid = std::min(out.tile_rows, out.m - m0);
  float* tile = out.data + m0 * out.k;
  for (int64_t i0 = 0; i0 < width; i0 += kW) {
    const int64_t rows = std::clamp<int64_t>(valid - i0, 0, kW);
    const float* src = a + (m0 + i0) * lda;
    for (int64_t k0 = 0; k0 < out.k; k0 += kW) {
      Transpose16(src + k0, lda, rows, std::min(kW, out.k - k0), tile + k0 * width + i0, width);
    }
  }
}

void WideGemmAvx512(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                    float alpha, float* y, int64_t ldy) {
  avx512::Dispatch(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
