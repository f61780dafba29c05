#include "cpu/wide_gemm.h"

#include <immintrin.h>

#include <algorithm>

#include "cpu/isa.h"
#include "cpu/prefetch.h"
#include "cpu/transpose8.h"

namespace icl::cpu {

bool WideGemmAvailable() { return CpuIsa() >= Isa::kAvx2; }

// From 13 rows of A (matmul.cc, RowDotMaxRows, gives the measurements), and with AVX-512 from
// 17 where a float32 W streams from memory (StreamsFromMemory): there WideGemm's tiles of one
// vector (13-16 rows) broadcast each element of W to only 16 lanes, each tile of W from 16
// rows of W, and RowDot's tiles of 4 x 6 read W once per four rows of A from L1. In ORT,
// Intel Xeon (AVX-512), K=768, N=32000 (98 MB), 3 runs of each build alternated, 2
// placements, medians of the runs' ICL/ORT, RowDot / WideGemm: one thread M=13 0.85, M=16
// 0.89, two threads 0.87, 0.90. Not where W stays in the caches: K=3072, N=768 1.08-1.21,
// K=N=768 and K=768, N=3072 1.00-1.07. 16-bit W and sizes between 9.4 and 98 MB not measured.
int64_t WideGemmFromRows(int64_t w_bytes) {
  return CpuIsa() >= Isa::kAvx512 && StreamsFromMemory(w_bytes) ? 17 : 13;
}

namespace {

// The tile geometry of the variant WideGemm will run (its Simd::kWidth and kTileLanes).
int64_t Lane() { return CpuIsa() >= Isa::kAvx512 ? 16 : 8; }
int64_t TileRows() { return (CpuIsa() >= Isa::kAvx512 ? 4 : 3) * Lane(); }

}  // namespace

// AVX2: tiles of three vectors, or two where the last tile would be one vector wide:
// WideGemm picks the rows of W per micro-tile for the first tile's width, 4 for three vectors,
// which leaves a one-vector tile 4 accumulators, too few to cover the FMA latency (kernel
// harness, one core, K=768, N=840, GFLOP/s in tiles of 24 + 8 against 16 + 16: M=32 64-89
// against 112, M=128 105 against 109-112, of a measured FMA peak of 118); except where the
// 6 rows of W of the two-vector tiles alias in L1 and would be copied once per group of
// tiles (WideGemmAvx2NarrowLast, wide_gemm_avx2.cc). AVX-512 keeps its tiles of four
// vectors (M=80 and 144 in tiles of 48 measured no faster).
int64_t PackedATileRows(int64_t m, int64_t k, int64_t w_row_bytes) {
  if (CpuIsa() >= Isa::kAvx512) return TileRows();
  const int64_t rest = m % TileRows();
  const bool narrow_last = m > TileRows() && rest != 0 && rest <= Lane();
  if (!narrow_last || WideGemmAvx2NarrowLast(m, k, w_row_bytes)) return TileRows();
  return TileRows() - Lane();
}

int64_t PackedASize(int64_t m, int64_t k) { return (m + TileRows()) * k; }

int64_t PackedATiles(const PackedA& a) { return (a.m + a.tile_rows - 1) / a.tile_rows; }

// WideGemm runs only where AVX2 is (WideGemmAvailable), so the packing may use it. Blocks of
// 8 x 8 transposed in registers: element by element (row by row over all of K, each store on
// another line of a tile larger than L1) it took 0.20 ms at M=256, K=768 on one core, 7% of
// the GEMM's time.
__attribute__((target("avx2"))) void PackATile(const float* a, int64_t lda, int64_t t,
                                               const PackedA& out) {
  const int64_t lane = Lane();
  const int64_t m0 = t * out.tile_rows;
  const int64_t width = std::min(out.tile_rows, (out.m - m0 + lane - 1) / lane * lane);
  const int64_t valid = std::min(out.tile_rows, out.m - m0);
  float* tile = out.data + m0 * out.k;
  // 16 columns at a time: each line of A is read whole at once.
  const int64_t k8 = out.k / 8 * 8;
  for (int64_t k0 = 0; k0 < k8; k0 += 16) {
    for (int64_t i0 = 0; i0 < width; i0 += 8) {
      const int64_t rows = std::max<int64_t>(0, valid - i0);
      for (int64_t k1 = k0; k1 < std::min(k0 + 16, k8); k1 += 8)
        Transpose8<false>(a + (m0 + i0) * lda + k1, lda, rows, tile + k1 * width + i0, width);
    }
  }
  for (int64_t kk = k8; kk < out.k; ++kk) {
    for (int64_t i = 0; i < width; ++i)
      tile[kk * width + i] = i < valid ? a[(m0 + i) * lda + kk] : 0.0f;
  }
}

void WideGemm(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
              float alpha, float* y, int64_t ldy) {
  if (CpuIsa() >= Isa::kAvx512) return WideGemmAvx512(a, w, w_type, ldw, rows, alpha, y, ldy);
  WideGemmAvx2(a, w, w_type, ldw, rows, alpha, y, ldy);
}

}  // namespace icl::cpu
