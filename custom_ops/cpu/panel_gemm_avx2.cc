// PanelGemm for AVX2 + FMA + F16C: 8 floats a vector; 6 rows of A x 2 vectors = 12
// accumulators of 16 ymm (a few rows of A: axpy form).
#include <immintrin.h>

#include "cpu/panel_gemm.h"

#define ICL_TARGET __attribute__((target("avx2,fma,f16c")))
#define ICL_ISA_NS avx2

namespace icl::cpu::avx2 {

struct Simd {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kRows = 6;
  static constexpr int kLanes = 2;
  // No alternative tile: 4 x 3 (12 accumulators, 3 vectors of W, 1 broadcast: all 16 ymm)
  // measured faster standalone (M=8, K=768, N=768: 0.153 against 0.189 ms) but 1.05-1.20 times
  // slower inside ORT at M=16-256 (plain view, K=768, N=768 and 3072).
  static constexpr int kAltRows = 0;
  static constexpr int kAltLanes = 0;
  // More rows of A than one tile: the first row tile packs each panel, 768 rows of W at a
  // time, for the others (FusedPanels in panel_gemm_impl.h).
  static constexpr int64_t kFusedPackRows = 768;
  ICL_TARGET static V Zero() { return _mm256_setzero_ps(); }
  ICL_TARGET static V Broadcast(float v) { return _mm256_set1_ps(v); }
  ICL_TARGET static V Load(const float* p) { return _mm256_loadu_ps(p); }
  ICL_TARGET static V LoadW(const float* p) { return _mm256_loadu_ps(p); }
  ICL_TARGET static V LoadW(const Ort::Float16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  ICL_TARGET static V LoadW(const Ort::BFloat16_t* p) {
    const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));
  }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  ICL_TARGET static V Scale(V v, float s) { return _mm256_mul_ps(v, _mm256_set1_ps(s)); }
  ICL_TARGET static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
};

}  // namespace icl::cpu::avx2

#include "cpu/panel_gemm_impl.h"

namespace icl::cpu {

void PanelGemmAvx2(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                   ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy) {
  avx2::Dispatch(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy);
}

}  // namespace icl::cpu
