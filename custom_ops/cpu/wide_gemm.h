// GEMM against the rows of W for many rows of A (AVX-512 or AVX2): the transposed-view
// IclMatMul where RowDot's per-output horizontal sums stop paying off.
//
// Y[m, n] = alpha * sum_k A[m, k] * W[n, k]. Instead of packing W (92 MB for an LM head, and
// ORT cannot prepack a custom op's input), A is packed once per call, transposed into tiles
// of up to 64 rows (A^T tiles), and the kernel broadcasts W's elements straight from its rows:
// each W element feeds up to 64 FMA lanes and no horizontal reduction is needed.
#pragma once

#include <cstdint>

#include "cpu/element.h"

namespace icl::cpu {

// A[m, k] repacked for WideGemm: tile t holds rows [T t, T t + width) as [k][width] from
// data + T t k, width a multiple of the vector width L (zero-padded) and T for every tile but
// the last (L = 16 with AVX-512, 8 with AVX2; T = tile_rows, PackedATileRows(m)). The caller
// owns data (PackedASize floats).
struct PackedA {
  float* data = nullptr;
  int64_t m = 0;
  int64_t k = 0;
  int64_t tile_rows = 0;
};

// True when the CPU has what WideGemm needs (AVX2 + FMA + F16C at least).
bool WideGemmAvailable();

// Rows of A per packed tile (PackedA::tile_rows) for m rows, floats that PackedA::data needs
// for A[m, k], and the number of its tiles.
int64_t PackedATileRows(int64_t m);
int64_t PackedASize(int64_t m, int64_t k);
int64_t PackedATiles(int64_t m);

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
void WideGemmAvx2(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                  float alpha, float* y, int64_t ldy);

}  // namespace icl::cpu
