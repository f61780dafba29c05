// RowDot for AVX-512F (16 floats a vector; 32 zmm: a tile of 4 rows of A x 6 rows of W is 24
// accumulators, 4 vectors of A and one of W; fewer rows of A, wider tiles).
#include <immintrin.h>

// GCC 12 flags the deliberately undefined lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_ps) as uninitialised once they are inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // clang (the wheel's compiler) has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "cpu/prefetch.h"
#include "cpu/row_dot.h"

#define ICL_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))
#define ICL_ISA_NS avx512

namespace icl::cpu::avx512 {

struct Simd {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kMaxRows = 4;
  static constexpr int kCachedTileRows = 0;
  static constexpr int64_t kCachedTileMaxK = 0;
  static constexpr int64_t kCachedTileMaxWBytes = 0;
  // Measured (K = N = 768, W in L3, one core, us): 1 row x 8 W rows 31 (x 12: 35, x 16: 38);
  // 2 x 8 37 (x 10: 39, x 12: 41); 4 x 6 50 (x 4: 53, x 5: 53); 8 rows as 4 x 6 twice 100
  // (8 x 3: 100).
  // One row of A walks W row after row (row_dot_impl.h, SweepInOrder) only where W streams
  // from memory (at 768 x 3072, 9.4 MB in L3, 1.02-1.03 the time of the 1 x 8 tile).
  static bool OneRowInOrder(int64_t w_bytes, int64_t) {
    return StreamsFromMemory(w_bytes);
  }
  static constexpr int TileCols(int rows) { return rows <= 3 ? 8 : 6; }
  ICL_TARGET static V Pinned(V v) {
    asm("" : "+v"(v));
    return v;
  }
  ICL_TARGET static V Zero() { return _mm512_setzero_ps(); }
  ICL_TARGET static V LoadA(const float* p) { return Pinned(_mm512_loadu_ps(p)); }
  ICL_TARGET static V LoadW(const float* p) { return _mm512_loadu_ps(p); }
  ICL_TARGET static V LoadW(const Ort::Float16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  ICL_TARGET static V LoadW(const Ort::BFloat16_t* p) {
    const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
  }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  ICL_TARGET static float Sum(V v) { return _mm512_reduce_add_ps(v); }
  ICL_TARGET static void Sum4(V a, V b, V c, V d, float* out) {
    // Interleave pairs, add, and gather each vector's partial sums into one 128-bit lane
    // position per vector; then fold the four 128-bit lanes together.
    const V ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const V cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const V abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 half = _mm256_add_ps(_mm512_castps512_ps256(abcd),
                                      _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                          _mm512_castps_pd(abcd), 1)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1)));
  }
};

}  // namespace icl::cpu::avx512

#include "cpu/row_dot_impl.h"

namespace icl::cpu {

void RowDotAvx512(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  avx512::Dispatch(p, n_begin, n_end);
}

void RowDotPackAvx512(const RowDotProblem& p, float* out) { avx512::Pack(p, out); }

int64_t RowDotWidthAvx512() { return avx512::Simd::kWidth; }

}  // namespace icl::cpu
