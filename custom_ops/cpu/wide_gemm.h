// GEMM against the rows of W for many rows of A (AVX-512 or AVX2): the transposed-view
// IclMatMul where RowDot's per-output horizontal sums stop paying off.
//
// Y[m, n] = alpha * sum_k A[m, k] * W[n, k]. Instead of packing W (92 MB for an LM head, and
// ORT cannot prepack a custom op's input), A is packed once per call, transposed into tiles
// of up to 64 rows (A^T tiles), and the kernel broadcasts W's elements straight from its rows:
// each W element feeds up to 64 FMA lanes and no horizontal reduction is needed.
// The price, where A has many rows: A's transpose and the transposed store of Y's tiles (perf,
// one thread, K = N = 768, M = 256, AVX-512: 2.2% and 1.9% of the samples, the micro-tile
// 75%; 100 GFLOP/s against ORT's 110-112 and the plain view's 106). Measured and not kept:
// W's rows transposed panel by panel into PanelGemm's layout (PackATile on W's rows, then
// PanelGemm's tiles, which store Y in place): transposing W costs more than A and Y where
// M < N (in ORT, one thread, alternated run by run, time / WideGemm's: AVX-512 K = N = 768
// M = 64 1.37, M = 128 1.15, M = 256 1.06; K = 768, N = 3072 1.39, 1.19, 1.07; AVX2 K = N =
// 768 M = 128 1.05, M = 256 0.99).
#pragma once

#include <cstdint>

#include "cpu/element.h"

namespace icl::cpu {

// A[m, k] repacked for WideGemm: tile t holds rows [T t, T t + width) as [k][width] from
// data + T t k, width a multiple of the vector width L (zero-padded) and T for every tile but
// the last (L = 16 with AVX-512, 8 with AVX2; T = tile_rows, PackedATileRows). The caller
// owns data (PackedASize floats).
struct PackedA {
  float* data = nullptr;
  int64_t m = 0;
  int64_t k = 0;
  int64_t tile_rows = 0;
};

// True when the CPU has what WideGemm needs (AVX2 + FMA + F16C at least).
bool WideGemmAvailable();

// Rows of A from which WideGemm, not RowDot, multiplies a float32 W of w_bytes (0: a 16-bit
// W), where WideGemmAvailable.
int64_t WideGemmFromRows(int64_t w_bytes);

// Rows of A per packed tile (PackedA::tile_rows) for A[m, k] against rows of W w_row_bytes
// apart (0 for a 16-bit W), floats that PackedA::data needs for A[m, k], and the number of
// tiles of `a` (whose m and tile_rows are set).
int64_t PackedATileRows(int64_t m, int64_t k, int64_t w_row_bytes);
int64_t PackedASize(int64_t m, int64_t k);
int64_t PackedATiles(const PackedA& a);

// Packs tile t of row-major A[m, k] (row stride lda) into out (whose data, m and k are set);
// the tiles are independent, so that threads can pack them at once.
void PackATile(const float* a, int64_t lda, int64_t t, const PackedA& out);

// y[i * ldy + j] = alpha * sum_k A[i, k] * W_j[k] for i < a.m, j < rows, where W_j starts at
// element j * ldw of `w` (of type w_type). Single-threaded: callers split the rows of W.
void WideGemm(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
              float alpha, float* y, int64_t ldy);

// One instantiation per instruction set (wide_gemm_<isa>.cc); WideGemm picks one.
void WideGemmAvx512(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                    float alpha, float* y, int64_t ldy);
// Whether AVX2 packs A[m, k] in tiles of three vectors with a last tile of one (not in tiles
// of two) against float32 rows of W w_row_bytes apart (0: a 16-bit W).
bool WideGemmAvx2NarrowLast(int64_t m, int64_t k, int64_t w_row_bytes);
void WideGemmAvx2(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                  float alpha, float* y, int64_t ldy);

}  // namespace icl::cpu
