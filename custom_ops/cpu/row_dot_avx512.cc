// RowDot for AVX-512F (16 floats a vector, 4 rows of A a tile: 16 accumulators of 32 zmm).
#include <immintrin.h>

// GCC 12 flags the deliberately undefined lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_ps) as uninitialised once they are inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "cpu/row_dot.h"

#define ICL_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))
#define ICL_ISA_NS avx512

namespace icl::cpu::avx512 {

struct Simd {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kMaxRows = 4;
  static constexpr int kTileCols = 4;
  ICL_TARGET static V Zero() { return _mm512_setzero_ps(); }
  ICL_TARGET static V LoadA(const float* p) { return _mm512_loadu_ps(p); }
  ICL_TARGET static V LoadW(const float* p) { return _mm512_loadu_ps(p); }
  ICL_TARGET static V LoadW(const Half* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  ICL_TARGET static V LoadW(const BFloat16* p) {
    const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
  }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  ICL_TARGET static float Sum(V v) { return _mm512_reduce_add_ps(v); }
};

}  // namespace icl::cpu::avx512

#include "cpu/row_dot_impl.h"

namespace icl::cpu {

void RowDotAvx512(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  avx512::Dispatch(p, n_begin, n_end);
}

}  // namespace icl::cpu
