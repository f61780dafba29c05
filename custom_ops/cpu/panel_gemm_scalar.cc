// PanelGemm in portable C++ (one float a "vector"), for CPUs without AVX2/FMA/F16C.
#include "cpu/panel_gemm.h"
#include "cpu/panel_gemm_copy.h"

#define ICL_TARGET
#define ICL_ISA_NS scalar

namespace icl::cpu::scalar {

// The first row tile's copy of a panel: the AVX-512 choices (not measured here).
struct Simd : PanelCopyAvx512 {
  using V = float;
  static constexpr int kWidth = 1;
  static constexpr int kRows = 4;
  static constexpr int kLanes = 4;
  static constexpr int kAltRows = 0;
  static constexpr int kAltLanes = 0;
  static constexpr int64_t kL1AheadRows = 0;
  static constexpr bool kMergeLastTile = false;
  static constexpr int64_t kAxpyFromBytes = int64_t{16} << 20;  // as AVX2 (not measured)
  static V Zero() { return 0.0f; }
  static V Broadcast(float v) { return v; }
  static V Load(const float* p) { return *p; }
  template <typename T>
  static V LoadW(const T* p) { return ToFloat(*p); }
  static V Fma(V a, V b, V acc) { return acc + a * b; }
  static V Scale(V v, float s) { return v * s; }
  static void Store(float* p, V v) { *p = v; }
};

}  // namespace icl::cpu::scalar

#include "cpu/panel_gemm_impl.h"

namespace icl::cpu {

void PanelGemmScalar(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                     ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y,
                     int64_t ldy, bool axpy) {
  scalar::Dispatch(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy, axpy);
}

int64_t PanelGemmScalarColumns(int64_t m) { return scalar::Columns(m); }

bool PanelGemmScalarAxpy(int64_t m, int64_t k, int64_t row_bytes) {
  return scalar::Axpy(m, k, row_bytes);
}

KSplitRule PanelGemmScalarKSplitRule() { return scalar::SplitRule(); }

}  // namespace icl::cpu
