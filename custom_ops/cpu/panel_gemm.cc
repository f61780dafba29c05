#include "cpu/panel_gemm.h"

#include "cpu/isa.h"

namespace icl::cpu {

void PanelGemm(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
               ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy,
               bool axpy) {
  switch (CpuIsa()) {
    case Isa::kAvx512:
      return PanelGemmAvx512(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy, axpy);
    case Isa::kAvx2: return PanelGemmAvx2(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy, axpy);
    default: return PanelGemmScalar(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy, axpy);
  }
}

int64_t PanelGemmColumns(int64_t m) {
  switch (CpuIsa()) {
    case Isa::kAvx512: return PanelGemmAvx512Columns(m);
    case Isa::kAvx2: return PanelGemmAvx2Columns(m);
    default: return PanelGemmScalarColumns(m);
  }
}

bool PanelGemmAxpy(int64_t m, int64_t k, int64_t row_bytes) {
  switch (CpuIsa()) {
    case Isa::kAvx512: return PanelGemmAvx512Axpy(m, k, row_bytes);
    case Isa::kAvx2: return PanelGemmAvx2Axpy(m, k, row_bytes);
    default: return PanelGemmScalarAxpy(m, k, row_bytes);
  }
}

KSplitRule PanelGemmKSplitRule() {
  switch (CpuIsa()) {
    case Isa::kAvx512: return PanelGemmAvx512KSplitRule();
    case Isa::kAvx2: return PanelGemmAvx2KSplitRule();
    default: return PanelGemmScalarKSplitRule();
  }
}

}  // namespace icl::cpu
