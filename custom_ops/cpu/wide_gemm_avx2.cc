// WideGemm for AVX2 + FMA: 8 floats a vector, A tiles of 24 rows (3 vectors), so that 12
// accumulators, the A tile and the broadcast fit the 16 ymm registers without spilling.
#include <immintrin.h>

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
  static constexpr int kStageBlocks = 0;  // Y's rows never staged (not measured with AVX2)
  ICL_TARGET static V Zero() { return _mm256_setzero_ps(); }
  ICL_TARGET static V Load(const float* p) { return _mm256_loadu_ps(p); }
  ICL_TARGET static V Broadcast(float v) { return _mm256_set1_ps(v); }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  ICL_TARGET static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  ICL_TARGET static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
};

}  // namespace icl::cpu::avx2

#include "cpu/wide_gemm_impl.h"

namespace icl::cpu {

void WideGemmAvx2(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                  float alpha, float* y, int64_t ldy) {
  avx2::Dispatch(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
