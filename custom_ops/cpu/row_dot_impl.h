// The register-tiled body of RowDot, written once over a SIMD traits type `Simd`.
//
// Include this only from a row_dot_<isa>.cc that first defines
//   ICL_TARGET  the function attribute that enables the instruction set (may be empty),
//   ICL_ISA_NS  a namespace name unique to that file, holding the traits struct `Simd`:
//     V, kWidth (floats per V), kMaxRows (rows of A per tile, <= 6) and kTileCols (rows of W
//     per tile) as the register file allows,
//     Zero(), LoadA(const float*),
//     LoadW(const float*|const Ort::Float16_t*|const Ort::BFloat16_t*),
//     Fma(a, b, acc), Sum(v), Sum4(a, b, c, d, float out[4]) (four sums at once).
// Each file's instantiations live in its own namespace, so the linker never mixes code
// compiled for different instruction sets.
#pragma once

#include <cstdint>

#include "cpu/prefetch.h"
#include "cpu/row_dot.h"

namespace icl::cpu::ICL_ISA_NS {

// A tile of Rows rows of A times Cols rows of W; the Rows * Cols accumulators stay in
// registers over the whole of K, so each W element is loaded once per tile.
template <int Rows, int Cols, typename TW>
ICL_TARGET void Tile(const float* a, int64_t lda, const TW* w, int64_t ldw, int64_t k,
                     float alpha, float* y, int64_t ldy, Prefetcher& prefetch) {
  typename Simd::V acc[Rows][Cols];
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < Cols; ++c) acc[r][c] = Simd::Zero();
  int64_t i = 0;
  for (; i + Simd::kWidth <= k; i += Simd::kWidth) {
    typename Simd::V av[Rows];
    for (int r = 0; r < Rows; ++r) av[r] = Simd::LoadA(a + r * lda + i);
    prefetch.Step();
    for (int c = 0; c < Cols; ++c) {
      const typename Simd::V wv = Simd::LoadW(w + c * ldw + i);
      for (int r = 0; r < Rows; ++r) acc[r][c] = Simd::Fma(av[r], wv, acc[r][c]);
    }
  }
  // Horizontal sums, four accumulators at a time where possible (a shared shuffle tree costs
  // a third of four separate reductions), then the K tail in scalar code.
  for (int r = 0; r < Rows; ++r) {
    float sums[Cols];
    int c = 0;
    for (; c + 4 <= Cols; c += 4)
      Simd::Sum4(acc[r][c], acc[r][c + 1], acc[r][c + 2], acc[r][c + 3], sums + c);
    for (; c < Cols; ++c) sums[c] = Simd::Sum(acc[r][c]);
    for (c = 0; c < Cols; ++c) {
      float sum = sums[c];
      for (int64_t t = i; t < k; ++t) sum += a[r * lda + t] * ToFloat(w[c * ldw + t]);
      y[r * ldy + c] = alpha * sum;
    }
  }
}

// All rows of A against Cols rows of W, in tiles of up to Simd::kMaxRows rows of A, while the
// next Cols rows of W (from `next`, when not null) are prefetched. The W tile stays in L1
// while the tiles of A stream from L2.
template <int Cols, typename TW>
ICL_TARGET void ColumnBlock(const RowDotProblem& p, const TW* w, const TW* next, float* y) {
  const int64_t tiles = (p.rows + Simd::kMaxRows - 1) / Simd::kMaxRows;
  const int64_t bytes = next ? ((Cols - 1) * p.ldw + p.k) * int64_t{sizeof(TW)} : 0;
  Prefetcher prefetch(next, bytes, tiles * (p.k / Simd::kWidth));
  int64_t r = 0;
  for (; r + Simd::kMaxRows <= p.rows; r += Simd::kMaxRows)
    Tile<Simd::kMaxRows, Cols>(p.a + r * p.lda, p.lda, w, p.ldw, p.k, p.alpha, y + r * p.ldy,
                               p.ldy, prefetch);
  const float* a = p.a + r * p.lda;
  y += r * p.ldy;
  switch (p.rows - r) {
    case 1: return Tile<1, Cols>(a, p.lda, w, p.ldw, p.k, p.alpha, y, p.ldy, prefetch);
    case 2: return Tile<2, Cols>(a, p.lda, w, p.ldw, p.k, p.alpha, y, p.ldy, prefetch);
    case 3: return Tile<3, Cols>(a, p.lda, w, p.ldw, p.k, p.alpha, y, p.ldy, prefetch);
    case 4: return Tile<4, Cols>(a, p.lda, w, p.ldw, p.k, p.alpha, y, p.ldy, prefetch);
    case 5: return Tile<5, Cols>(a, p.lda, w, p.ldw, p.k, p.alpha, y, p.ldy, prefetch);
    default: return;  // kMaxRows <= 6, so nothing else remains
  }
}

template <typename TW>
ICL_TARGET void Run(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  const TW* w = static_cast<const TW*>(p.w) + n_begin * p.ldw;
  float* y = p.y;
  int64_t n = n_begin;
  // The W rows after the current `cols`, or null past the end of this call's rows.
  auto next = [&](int64_t cols) { return n + 2 * cols <= n_end ? w + cols * p.ldw : nullptr; };
  // One row of A (a GEMV) needs more W rows in flight to hide the FMA latency.
  if (p.rows == 1) {
    for (; n + 8 <= n_end; n += 8, w += 8 * p.ldw, y += 8) {
      const TW* ahead = next(8);
      Prefetcher prefetch(ahead, ahead ? (7 * p.ldw + p.k) * int64_t{sizeof(TW)} : 0,
                          p.k / Simd::kWidth);
      Tile<1, 8>(p.a, p.lda, w, p.ldw, p.k, p.alpha, y, p.ldy, prefetch);
    }
  }
  constexpr int kCols = Simd::kTileCols;
  for (; n + kCols <= n_end; n += kCols, w += kCols * p.ldw, y += kCols)
    ColumnBlock<kCols>(p, w, next(kCols), y);
  for (; n < n_end; ++n, w += p.ldw, ++y) ColumnBlock<1>(p, w, next(1), y);
}

inline void Dispatch(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  switch (p.w_type) {
    case ElemType::kFloat: return Run<float>(p, n_begin, n_end);
    case ElemType::kFloat16: return Run<Ort::Float16_t>(p, n_begin, n_end);
    case ElemType::kBFloat16: return Run<Ort::BFloat16_t>(p, n_begin, n_end);
  }
}

}  // namespace icl::cpu::ICL_ISA_NS
