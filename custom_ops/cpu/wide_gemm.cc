#include "cpu/wide_gemm.h"

#include <algorithm>

#include "cpu/isa.h"

namespace icl::cpu {

bool WideGemmAvailable() { return CpuIsa() >= Isa::kAvx2; }

namespace {

// The tile geometry of the variant WideGemm will run (its Simd::kWidth and kTileLanes).
int64_t Lane() { return CpuIsa() >= Isa::kAvx512 ? 16 : 8; }
int64_t TileRows() { return (CpuIsa() >= Isa::kAvx512 ? 4 : 3) * Lane(); }

}  // namespace

int64_t PackedASize(int64_t m, int64_t k) { return (m + TileRows()) * k; }

int64_t PackedATiles(int64_t m) { return (m + TileRows() - 1) / TileRows(); }

void PackATile(const float* a, int64_t lda, int64_t t, const PackedA& out) {
  const int64_t lane = Lane();
  const int64_t m0 = t * TileRows();
  const int64_t width = std::min(TileRows(), (out.m - m0 + lane - 1) / lane * lane);
  const int64_t valid = std::min(TileRows(), out.m - m0);
  float* tile = out.data + m0 * out.k;
  for (int64_t i = 0; i < valid; ++i) {
    const float* row = a + (m0 + i) * lda;
    for (int64_t kk = 0; kk < out.k; ++kk) tile[kk * width + i] = row[kk];
  }
  for (int64_t i = valid; i < width; ++i)
    for (int64_t kk = 0; kk < out.k; ++kk) tile[kk * width + i] = 0.0f;
}

void WideGemm(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
              float alpha, float* y, int64_t ldy) {
  if (CpuIsa() >= Isa::kAvx512) return WideGemmAvx512(a, w, w_type, ldw, rows, alpha, y, ldy);
  WideGemmAvx2(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
