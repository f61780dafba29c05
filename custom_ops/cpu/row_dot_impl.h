// The register-tiled body of RowDot, written once over a SIMD traits type `Simd`.
//
// Include this only from a row_dot_<isa>.cc that first defines
//   ICL_TARGET  the function attribute that enables the instruction set (may be empty),
//   ICL_ISA_NS  a namespace name unique to that file, holding the traits struct `Simd`:
//     V, kWidth (floats per V), kMaxRows (rows of A per tile once A has more rows than that),
//     kCachedTileRows (0, or a number of rows of A above kMaxRows that run as one tile where
//     W has at most kCachedTileMaxWBytes bytes, RowDotProblem::w_bytes, and
//     K <= kCachedTileMaxK) and TileCols(rows) (rows of W per tile of `rows` rows of A) as
//     the register file allows, Zero(), LoadA(const float*) (returns a value in a register:
//     see below),
//     LoadW(const float*|const Ort::Float16_t*|const Ort::BFloat16_t*), Pinned(v) (see below),
//     Fma(a, b, acc), Sum(v), Sum4(a, b, c, d, float out[4]) (four sums at once),
//     OneRowInOrder(w_bytes, k) (whether one row of A reads W row after row: SweepInOrder).
// Each file's instantiations live in its own namespace, so the linker never mixes code
// compiled for different instruction sets.
//
// LoadA must return its vector in a register that the compiler cannot turn back into a memory
// operand (an empty asm statement that "modifies" it, Pinned() in the traits), and so must a
// W vector that several rows of A use: g++ otherwise folds the load of each W vector into
// every FMA that uses it, so a tile of R rows of A loaded each W vector R times (AVX-512,
// K = N = 768, W in L3, one core: 2 rows 52 -> 41 us, 3 rows 71 -> 46 us). Tiles that Fold
// take W vectors into the FMAs instead: with one row of A each W vector feeds one FMA, and
// the load folded into it is one instruction instead of two. Where W streams from memory
// that measured faster, as if the shorter loop kept more of W's cache misses in flight in
// the same reorder window (K = 768, N = 32000, W cold, one core, thread CPU time, loaded
// machine, medians of 30-40 alternated runs: AVX2 1 x 8 tiles 6.20 -> 5.53 ms and 5.44 ->
// 5.17 ms, AVX-512 5.57 -> 5.19 ms; float16 W unchanged); with two rows of A too, though
// each W vector is then loaded twice (AVX2 2 x 6 tiles 6.45 -> 6.02 ms, AVX-512 6.07 -> 5.64;
// three rows: AVX2 3 x 4 6.31 -> 6.25, within the noise), so two rows fold only where W
// streams from memory (StreamsFromMemory) and A has no more rows (AVX2, M=4 in two
// tiles of two rows: in ORT, one thread, K=768, N=32000, 1.19 (0.88-1.34) the time of
// af95f10 when folded).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/prefetch.h"
#include "cpu/row_dot.h"
#include "cpu/scratch.h"

// Tile and Block are inlined into their callers (Block into Sweep): with K = 768 a tile's loop
// runs 48-96 steps, and a call per block of W (saving and restoring six registers, realigning
// the stack, the tile's arguments through memory) was a measurable share of each block
// (see Tile's epilogue for the numbers).
#ifndef ICL_ROW_DOT_INLINE
#define ICL_ROW_DOT_INLINE __attribute__((always_inline)) inline
#endif

namespace icl::cpu::ICL_ISA_NS {

// Whether Tile issues its prefetches on every step of K, those of the steps that prefetch
// nothing at the W vector being loaded (a line in L1 already). clang (the wheel's compiler)
// moved a tile's FMAs below the branches around conditional prefetches, after all the W loads
// of the step, so that the AVX2 tile of 3 x 4 needed 19 ymm registers and spilled three
// accumulators on every step of K (1.21-1.41x g++'s time at 4-8 rows of A); g++ keeps the
// branches and the order. Only where that was measured: AVX2 (8 floats a vector), float32 W
// (a prefetch every other step), tiles of more than one row of A; clang's AVX-512 tiles and
// 16-bit W tiles spilled as much or more with it.
#if defined(__clang__)
constexpr bool kPrefetchEveryStep = true;
#else
constexpr bool kPrefetchEveryStep = false;
#endif

// A tile of Rows rows of A times Cols rows of W; the Rows * Cols accumulators stay in
// registers over the whole of K, so each W element is loaded once per tile. `ap` is the
// tile's rows of A interleaved (PackRows), `a` the same rows as given (for the K tail).
// With `ahead` > 0, every W vector's counterpart `ahead` elements on (the same row of the
// next block of W) is prefetched into L2 as it is loaded: the loads of the next block then
// hit L2 instead of waiting on memory, and one prefetch per W load needs no registers of its
// own (a separate walk over the next block spilled the tile's pointers).
template <int Rows, int Cols, bool Fold, typename TW>
ICL_TARGET ICL_ROW_DOT_INLINE void Tile(const float* ap, const float* a, int64_t lda,
                                        const TW* w, int64_t ldw, int64_t k, int64_t ahead,
                                        float alpha, float* y, int64_t ldy) {
  // Every loop over the tile is unrolled in full (the pragmas): clang (the wheel's compiler)
  // otherwise kept the loop over W's rows, and with it the accumulators, in memory, a load and
  // a store around every FMA (1.3-1.8x g++'s time at 8-12 rows of A; g++ unrolls them itself).
  typename Simd::V acc[Rows * Cols];
#pragma GCC unroll 64
  for (int t = 0; t < Rows * Cols; ++t) acc[t] = Simd::Zero();
  int64_t i = 0;
  // A vector of W shorter than a cache line (AVX2, 16-bit W) prefetches every other step.
  constexpr int64_t kBytes = Simd::kWidth * int64_t{sizeof(TW)};
  constexpr int64_t kSteps = kBytes >= 64 ? 1 : 64 / kBytes;
  constexpr bool kEveryStep =
      kPrefetchEveryStep && Rows > 1 && Simd::kWidth == 8 && std::is_same_v<TW, float>;
  for (; i + Simd::kWidth <= k; i += Simd::kWidth, ap += Rows * Simd::kWidth) {
    typename Simd::V av[Rows];
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) av[r] = Simd::LoadA(ap + r * Simd::kWidth);
    const bool fetch = ahead > 0 && (kSteps == 1 || (i / Simd::kWidth) % kSteps == 0);
#pragma GCC unroll 16
    for (int c = 0; c < Cols; ++c) {
      if (kEveryStep) {
        __builtin_prefetch(w + c * ldw + i + (fetch ? ahead : 0), /*rw=*/0, /*locality=*/2);
      } else if (fetch) {
        __builtin_prefetch(w + c * ldw + i + ahead, /*rw=*/0, /*locality=*/2);
      }
      const typename Simd::V wv =
          Fold ? Simd::LoadW(w + c * ldw + i) : Simd::Pinned(Simd::LoadW(w + c * ldw + i));
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) acc[r * Cols + c] = Simd::Fma(av[r], wv, acc[r * Cols + c]);
    }
  }
  // Horizontal sums, four accumulators at a time where possible (a shared shuffle tree costs
  // a third of four separate reductions), then the K tail in scalar code.
  float sums[Rows * Cols];
  int t = 0;
  for (; t + 4 <= Rows * Cols; t += 4)
    Simd::Sum4(acc[t], acc[t + 1], acc[t + 2], acc[t + 3], sums + t);
  for (; t < Rows * Cols; ++t) sums[t] = Simd::Sum(acc[t]);
  // No K tail (K a whole number of vectors): the sums go straight to Y. The general loop below
  // kept, for each of the tile's outputs, the set-up of a tail loop that then ran no step, a
  // tenth of a tile's time at K = 768. In ORT, one thread, K = N = 768, thread CPU time,
  // loaded machine, medians of 600 alternated runs against 9ab09d6, this alone: AVX2 M=2/4/8
  // 0.95/0.94/0.97, AVX-512 0.97/0.99/0.98; with Tile and Block inlined as well (above):
  // AVX2 0.94/0.91/0.91, AVX-512 0.92/0.91/0.92.
  if (i == k) {
#pragma GCC unroll 64
    for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 16
      for (int c = 0; c < Cols; ++c) y[r * ldy + c] = alpha * sums[r * Cols + c];
    }
    return;
  }
  for (int r = 0; r < Rows; ++r) {
    for (int c = 0; c < Cols; ++c) {
      float sum = sums[r * Cols + c];
      for (int64_t j = i; j < k; ++j) sum += a[r * lda + j] * ToFloat(w[c * ldw + j]);
      y[r * ldy + c] = alpha * sum;
    }
  }
}

// The tile of the last `rows` rows of A, 0 < rows <= Max.
template <int Max, int Cols, typename TW>
ICL_TARGET void LastTile(int64_t rows, const float* ap, const float* a, int64_t lda, const TW* w,
                         int64_t ldw, int64_t k, int64_t ahead, float alpha, float* y,
                         int64_t ldy) {
  if constexpr (Max > 0) {
    if (rows == Max) return Tile<Max, Cols, false>(ap, a, lda, w, ldw, k, ahead, alpha, y, ldy);
    LastTile<Max - 1, Cols>(rows, ap, a, lda, w, ldw, k, ahead, alpha, y, ldy);
  }
}

// Rows of A in tiles of MaxRows (the last one shorter), each tile's rows interleaved vector
// by vector over K's whole vectors: tile T's vector i of its row r at
// out[T * MaxRows * kv + (i * rows_T + r) * kWidth], kv = K rounded down to whole vectors. A
// tile then reads its rows of A as one stream from one pointer: read in place, R rows of A
// K apart are R streams and R pointers, which at K = 3072 no longer stay in L1 beside the
// tile of W and spill the tile's pointers (AVX-512, K = 3072, N = 768, one core: 8 rows
// 458 -> 396 us, 4 rows 247 -> 215 us; as fast at K = 768).
template <int MaxRows>
ICL_TARGET void PackRows(const RowDotProblem& p, float* out) {
  const int64_t kv = p.k / Simd::kWidth * Simd::kWidth;
  for (int64_t r0 = 0; r0 < p.rows; r0 += MaxRows) {
    const int64_t rows = std::min<int64_t>(MaxRows, p.rows - r0);
    for (int64_t i = 0; i < kv; i += Simd::kWidth) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* src = p.a + (r0 + r) * p.lda + i;
        std::copy(src, src + Simd::kWidth, out);
        out += Simd::kWidth;
      }
    }
  }
}

// All rows of A against the Cols rows of W from `w`, in tiles of MaxRows rows of A (the last
// one shorter): the W tile stays in L1 while the tiles of A stream past it. `ahead` > 0: every
// tile prefetches the W rows that many elements on (see Tile); prefetching them in the first
// tile only was slower where W comes from memory (ORT, one thread, K=768, N=32000, 8 rows of
// A: every tile / first tile only 0.78 (p10-p90 0.71-0.85), K=N=768 0.96).
template <int MaxRows, int Cols, bool Fold, typename TW>
ICL_TARGET ICL_ROW_DOT_INLINE void Block(const RowDotProblem& p, const float* ap, const TW* w,
                                         int64_t ahead, float* y) {
  const int64_t kv = p.k / Simd::kWidth * Simd::kWidth;
  int64_t r = 0;
  for (; r + MaxRows <= p.rows; r += MaxRows) {
    Tile<MaxRows, Cols, Fold>(ap + r * kv, p.a + r * p.lda, p.lda, w, p.ldw, p.k, ahead, p.alpha,
                        y + r * p.ldy, p.ldy);
  }
  if (r < p.rows) {
    LastTile<MaxRows - 1, Cols>(p.rows - r, ap + r * kv, p.a + r * p.lda, p.lda, w, p.ldw, p.k,
                                ahead, p.alpha, y + r * p.ldy, p.ldy);
  }
}

// W rows [n_begin, n_end), Cols at a time, each block prefetching the next. Measured and not
// kept (in ORT, K = N = 768 unless said, one thread, thread CPU time, loaded machine, medians
// of 150-800 alternated runs, time / the kept code): prefetching 2 or 3 blocks ahead 0.97-1.04;
// the next block into L1 (prefetcht0) or non-temporal 1.08-1.17; no software prefetch
// 1.02-1.17; an extra L1 prefetch 64-256 floats ahead in the same rows 0.90-1.08 (no consistent
// sign); a prefetch on every other line only, AVX2 1.2-2.0; the loop over K by whole lines with
// branch-free prefetches 1.00 (AVX2 3 x 4 then spilled: 1.55 at 8 rows); K in blocks of
// 512-1024 for several tiles of rows at K = 3072 (each block of A in L1) 0.91-1.12 in
// process and 1.05-1.37 in bench_matmul at two threads.
template <int MaxRows, int Cols, bool Fold, typename TW>
ICL_TARGET void Sweep(const RowDotProblem& p, const float* ap, int64_t n_begin, int64_t n_end) {
  const TW* w = static_cast<const TW*>(p.w) + n_begin * p.ldw;
  float* y = p.y;
  int64_t n = n_begin;
  for (; n + Cols <= n_end; n += Cols, w += Cols * p.ldw, y += Cols)
    Block<MaxRows, Cols, Fold>(p, ap, w, n + 2 * Cols <= n_end ? Cols * p.ldw : 0, y);
  for (; n < n_end; ++n, w += p.ldw, ++y)
    Block<MaxRows, 1, Fold>(p, ap, w, n + 2 <= n_end ? p.ldw : 0, y);
}

// One row of A against W's rows one after another, where Simd::OneRowInOrder says so (W
// streams from memory; with AVX2 also a W of 4 MB or more at K <= 1024): W is then read as
// one sequential stream, as MLAS reads its prepacked B, where the 1 x 8 tile reads eight rows
// of W side by side and prefetches the next eight (sixteen streams, each a few pages). Four
// accumulators over K per row of W; the line 256 bytes ahead in the stream is prefetched
// into L2 at every step, beside the hardware prefetcher. Measured in ORT, K = 768, N = 32000,
// float32, in one session with the choice switched run by run (the same W; ORT's MLAS capped
// to AVX2 for AVX2), loaded machine, medians of 200 rounds, in order / the 1 x 8 tile: AVX2
// one thread 0.91 and 0.87, two threads 0.94; AVX-512 one thread 0.95 and 1.01, two threads
// 1.03 (within the noise). Measured in separate sessions (each build's own copies of W, 6-8
// of them, which alone move a cell by up to 10%), time / 866b5ba's tile: float16 W AVX2 0.90,
// AVX-512 0.88 (bench_matmul's grid: 0.83-0.93); N = 3072 (9.4 MB, W in L3): AVX2 0.88-0.90,
// AVX-512 1.02-1.03 (kept the tile); K = 3072, N = 768, AVX2 1.2-1.3 (kept the tile). No
// prefetch, or 128 bytes ahead: 0.93-1.0; 1 or 4 KB ahead: 1.03-1.05 against 0.92 without.
// Two, three and four rows of A read the same way (4, 4 and 2 accumulators a row; AVX2,
// N = 32000, 6 placements): 1.00, 1.00 and 1.43 the time of their tiles, so they keep them.
template <typename TW>
ICL_TARGET void SweepInOrder(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  constexpr int kAcc = 4;
  constexpr int64_t kStep = kAcc * Simd::kWidth;
  constexpr int64_t kStepBytes = kStep * int64_t{sizeof(TW)};
  constexpr int64_t kAhead = 256 / int64_t{sizeof(TW)};
  const TW* w = static_cast<const TW*>(p.w) + n_begin * p.ldw;
  float* y = p.y;
  for (int64_t n = n_begin; n < n_end; ++n, w += p.ldw, ++y) {
    typename Simd::V acc[kAcc];
#pragma GCC unroll 8
    for (int c = 0; c < kAcc; ++c) acc[c] = Simd::Zero();
    int64_t i = 0;
    for (; i + kStep <= p.k; i += kStep) {
#pragma GCC unroll 8
      for (int64_t b = 0; b < kStepBytes; b += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(w + i + kAhead) + b, /*rw=*/0,
                           /*locality=*/2);
#pragma GCC unroll 8
      for (int c = 0; c < kAcc; ++c) {
        acc[c] = Simd::Fma(Simd::LoadA(p.a + i + c * Simd::kWidth),
                           Simd::LoadW(w + i + c * Simd::kWidth), acc[c]);
      }
    }
    for (; i + Simd::kWidth <= p.k; i += Simd::kWidth)
      acc[0] = Simd::Fma(Simd::LoadA(p.a + i), Simd::LoadW(w + i), acc[0]);
    float sums[kAcc];
    Simd::Sum4(acc[0], acc[1], acc[2], acc[3], sums);
    float sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    for (; i < p.k; ++i) sum += p.a[i] * ToFloat(w[i]);
    *y = p.alpha * sum;
  }
}

// Rows of A per tile: all of them up to kMaxRows, then tiles of kMaxRows (the last shorter).
template <int MaxRows, typename TW>
ICL_TARGET void RunRows(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  const float* ap = p.rows == 1 ? p.a : p.packed_a;  // one row: already one stream
  if (ap == nullptr) {
    const int64_t kv = p.k / Simd::kWidth * Simd::kWidth;
    float* packed = ThreadScratch(ScratchSlot::kRowDotA, static_cast<size_t>(p.rows * kv));
    PackRows<MaxRows>(p, packed);
    ap = packed;
  }
  constexpr int kCols = Simd::TileCols(MaxRows);
  if constexpr (MaxRows == 1) {
    if (Simd::OneRowInOrder(p.w_bytes, p.k)) return SweepInOrder<TW>(p, n_begin, n_end);
    Sweep<MaxRows, kCols, true, TW>(p, ap, n_begin, n_end);
  } else if constexpr (MaxRows == 2) {
    // One tile of rows of A only: a second tile reads the block of W from L1 again.
    if (StreamsFromMemory(p.w_bytes) && p.rows <= MaxRows) {
      return Sweep<MaxRows, kCols, true, TW>(p, ap, n_begin, n_end);
    }
    Sweep<MaxRows, kCols, false, TW>(p, ap, n_begin, n_end);
  } else {
    Sweep<MaxRows, kCols, false, TW>(p, ap, n_begin, n_end);
  }
}

// Calls fn(std::integral_constant<int, R>) with R the rows of A per tile for p's rows.
template <typename Fn>
ICL_TARGET void WithTileRows(const RowDotProblem& p, const Fn& fn) {
  constexpr int kMax = Simd::kMaxRows;
  constexpr int kCached = Simd::kCachedTileRows;
  static_assert(kCached == 0 || kCached > kMax, "kCachedTileRows: a tile wider than kMaxRows");
  if constexpr (kCached > 0) {
    if (p.rows == kCached && p.w_bytes <= Simd::kCachedTileMaxWBytes &&
        p.k <= Simd::kCachedTileMaxK) {
      return fn(std::integral_constant<int, kCached>{});
    }
  }
  const int64_t rows = p.rows;
  static_assert(kMax >= 1 && kMax <= 6, "the switch below covers tiles of up to 6 rows");
  // Fewer rows of A than a full tile: one tile of exactly those rows, as wide as the
  // registers allow for it. Tiles of kMax rows that would leave one row over (AVX2: 4 and 7
  // rows) take one row less, so that no row of A is multiplied alone by narrow W tiles.
  if (kMax > 2 && rows > kMax && rows % kMax == 1) {
    return fn(std::integral_constant<int, std::max(1, kMax - 1)>{});
  }
  switch (std::min<int64_t>(rows, kMax)) {
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, std::min(2, kMax)>{});
    case 3: return fn(std::integral_constant<int, std::min(3, kMax)>{});
    case 4: return fn(std::integral_constant<int, std::min(4, kMax)>{});
    case 5: return fn(std::integral_constant<int, std::min(5, kMax)>{});
    default: return fn(std::integral_constant<int, kMax>{});
  }
}

template <typename TW>
ICL_TARGET void Run(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  WithTileRows(p, [&](auto rows) {
    RunRows<decltype(rows)::value, TW>(p, n_begin, n_end);
  });
}

inline void Pack(const RowDotProblem& p, float* out) {
  WithTileRows(p, [&](auto rows) { PackRows<decltype(rows)::value>(p, out); });
}

inline void Dispatch(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  switch (p.w_type) {
    case ElemType::kFloat: return Run<float>(p, n_begin, n_end);
    case ElemType::kFloat16: return Run<Ort::Float16_t>(p, n_begin, n_end);
    case ElemType::kBFloat16: return Run<Ort::BFloat16_t>(p, n_begin, n_end);
  }
}

}  // namespace icl::cpu::ICL_ISA_NS
