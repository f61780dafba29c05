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

#define ICL_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))
#define ICL_ISA_NS avx512

namespace icl::cpu::avx512 {

struct Simd {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kRows = 6;
  static constexpr int kLanes = 4;
  static constexpr int kAltRows = 8;
  static constexpr int kAltLanes = 3;
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
                     int64_t ldy) {
  avx512::Dispatch(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy);
}

int64_t PanelGemmAvx512Columns(int64_t m) { return avx512::Columns(m); }

}  // namespace icl::cpu
