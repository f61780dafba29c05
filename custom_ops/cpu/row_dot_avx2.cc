// RowDot for AVX2 + FMA + F16C (8 floats a vector; 16 ymm: a tile of 3 rows of A x 4 rows of
// W is 12 accumulators, 3 vectors of A and one of W; 4 rows x 2, 2 rows x 6, one row x 8).
#include <immintrin.h>

#include "cpu/row_dot.h"

#define ICL_TARGET __attribute__((target("avx2,fma,f16c")))
#define ICL_ISA_NS avx2

namespace icl::cpu::avx2 {

struct Simd {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kMaxRows = 4;
  // Measured (K = N = 768, W in L3, one core, us, loaded machine): 3 rows as 3 x 4 46 (as
  // 2 x 6 + 1 x 6: 65); 6 rows 93 (as 2 x 6 three times: 104); 8 rows 127 (133).
  // A tile of 4 rows has room for 2 rows of W only (4 x 3 needs 17 ymm: GCC spilled an
  // accumulator, 45 GFLOP/s), yet it beats two tiles of 2 x 6, whose 8 loads per 12 FMAs
  // bound them (W in L2, one core, best of 1 s: 2 x 6 68-70 GFLOP/s, 3 x 4 87, 4 x 2 85).
  static constexpr int TileCols(int rows) {
    return rows == 1 ? 8 : rows == 2 ? 6 : rows == 3 ? 4 : 2;
  }
  // Rows of A per tile (row_dot_impl.h, TileRowsFor): tiles of 3 x 4, but 4 x 2 for 4, 7
  // and 8 rows (K = N = 768, W in L3, one core, best of 1 s, ms against the tiles of 2 x 6
  // (4, 7 rows) or 3 + 3 + 2 (8 rows) before: 4 rows 0.053 / 0.066, 7 rows 0.099 / 0.118, 8
  // rows 0.108 / 0.110), and 2 x 6 where tiles of 3 leave one row (10, 13 rows): tiles of 4 x
  // 2 rows would leave 2 x 2 tiles (6 rows as 4 + 2: 0.096 against 3 + 3: 0.080).
  static constexpr int64_t TileRows(int64_t rows) {
    if (rows <= 4) return rows;
    if (rows == 7 || rows == 8) return 4;
    return rows % 3 == 1 ? 2 : 3;
  }
  ICL_TARGET static V Pinned(V v) {
    asm("" : "+x"(v));
    return v;
  }
  ICL_TARGET static V Zero() { return _mm256_setzero_ps(); }
  ICL_TARGET static V LoadA(const float* p) { return Pinned(_mm256_loadu_ps(p)); }
  ICL_TARGET static V LoadW(const float* p) { return Pinned(_mm256_loadu_ps(p)); }
  ICL_TARGET static V LoadW(const Ort::Float16_t* p) {
    return Pinned(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  ICL_TARGET static V LoadW(const Ort::BFloat16_t* p) {
    const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return Pinned(_mm256_castsi256_ps(_mm256_slli_epi32(b, 16)));
  }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  ICL_TARGET static float Sum(V v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
  }
  ICL_TARGET static void Sum4(V a, V b, V c, V d, float* out) {
    const V ab = _mm256_hadd_ps(a, b);
    const V cd = _mm256_hadd_ps(c, d);
    const V abcd = _mm256_hadd_ps(ab, cd);  // per 128-bit half: a, b, c, d partial sums
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
};

}  // namespace icl::cpu::avx2

#include "cpu/row_dot_impl.h"

namespace icl::cpu {

void RowDotAvx2(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  avx2::Dispatch(p, n_begin, n_end);
}

void RowDotPackAvx2(const RowDotProblem& p, float* out) { avx2::Pack(p, out); }

int64_t RowDotWidthAvx2() { return avx2::Simd::kWidth; }

}  // namespace icl::cpu
