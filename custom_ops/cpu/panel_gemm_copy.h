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
  // the first tile's copy (K=768, N=768 and 3072, M=16-256) was 3-10% slower than in place
  // (AMD EPYC). Except where its rows share their offset in a page (CopyAfterTiles in
  // panel_gemm_impl.h: K=768, N=3072 on an Intel Xeon 0.53-0.78 copied).
  static constexpr int kCopyShortAfterTiles = 0;
  static constexpr int kCopyShortNarrowAfterTiles = 0;
  // No kSpreadFromTiles: the copy is never spread over the row tiles (SpreadPanels in
  // panel_gemm_impl.h). In ORT, one thread, alternated against the first tile's copy (and the
  // in-place walk at K=768), spread in slices of 256 rows / before, median of 25 runs:
  // K=3072, N=768 M=32-256 1.02-1.06; K=768, N=3072 M=64-256 1.03-1.04; K=768, N=32000
  // M=32-256 1.03-1.05; K=N=768 0.99-1.02. In slices of 1024 or 4096 rows (AVX2's choice)
  // no faster: M=24 1.04-1.12, M=64-256 0.97-1.04 (K=3072, N=768 M=128-256 0.97-1.00).
};

}  // namespace icl::cpu
