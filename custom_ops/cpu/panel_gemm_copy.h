// The choices of PanelGemm's first row tile's copy of a panel (CopyingPanel in
// panel_gemm_impl.h) measured with AVX-512, for the traits that take them: panel_gemm_avx512.cc
// and panel_gemm_scalar.cc (not measured there).
#pragma once

#include <cstdint>

namespace icl::cpu {

struct PanelCopyAvx512 {
  // Slices of 256 rows (48 KB of an 8 x 3 panel, in L2 with the slice of A): 128 a few percent
  // slower (Y reloaded per slice), 384-768 within the noise (K=3072, N=768, M=64 and 128).
  static constexpr int64_t kCopiedRows = 256;
  // Copy beyond two tiles: with two, in place was faster (copy made ahead, float32 K=2112,
  // N=768, M=8: 1.31 in place, 1.55 copied ms).
  static constexpr int kCopyAfterTiles = 2;
  // A narrow W (rows <= 3 KB apart) beyond four tiles: in place / copied ahead, K=1536 and
  // 3072, N=768, M=24 and 32: 0.65-0.81 (benchmarks/results/matmul_cpu_vs_3564154.md).
  static constexpr int kCopyNarrowAfterTiles = 4;
  // A float32 W of fewer than kPackFromRows rows is never copied: in place stays in cache, and
  // the first tile's copy (K=768, N=768 and 3072, M=16-256) was 3-10% slower than in place.
  static constexpr int kCopyShortAfterTiles = 0;
  static constexpr int kCopyShortNarrowAfterTiles = 0;
};

}  // namespace icl::cpu
