#include "cpu/wide_gemm.h"

#include <algorithm>

#include "cpu/isa.h"

namespace icl::cpu {

bool WideGemmAvailable() { return CpuIsa() >= Isa::kAvx2; }

void PackA(const float* a, int64_t m, int64_t k, int64_t lda, PackedA& out) {
  // The tile geometry of the variant WideGemm will run (its Simd::kWidth and kTileLanes).
  const bool avx512 = CpuIsa() >= Isa::kAvx512;
  const int64_t lane = avx512 ? 16 : 8;
  const int64_t tile_rows = (avx512 ? 4 : 3) * lane;
  out.m = m;
  out.k = k;
  out.data.assign(static_cast<size_t>((m + tile_rows) * k), 0.0f);
  for (int64_t m0 = 0; m0 < m; m0 += tile_rows) {
    const int64_t width = std::min(tile_rows, (m - m0 + lane - 1) / lane * lane);
    const int64_t valid = std::min(tile_rows, m - m0);
    float* tile = out.data.data() + m0 * k;
    for (int64_t i = 0; i < valid; ++i) {
      const float* row = a + (m0 + i) * lda;
      for (int64_t kk = 0; kk < k; ++kk) tile[kk * width + i] = row[kk];
    }
  }
}

void WideGemm(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
              float alpha, float* y, int64_t ldy) {
  if (CpuIsa() >= Isa::kAvx512) return WideGemmAvx512(a, w, w_type, ldw, rows, alpha, y, ldy);
  WideGemmAvx2(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
