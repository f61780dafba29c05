// The body of PanelGemm, written once over a SIMD traits type `Simd`.
//
// Include this only from a panel_gemm_<isa>.cc that first defines
//   ICL_TARGET  the function attribute that enables the instruction set (may be empty),
//   ICL_ISA_NS  a namespace name unique to that file, holding the traits struct `Simd`:
//     V, kWidth (floats per V), kRows (rows of A per tile) and kLanes (V per panel row) as
//     the register file allows, kAltRows and kAltLanes (another tile, used when M is a
//     multiple of kAltRows; kAltRows 0: none),
//     Zero(), Broadcast(float), Load(const float*),
//     LoadW(const float*|const Ort::Float16_t*|const Ort::BFloat16_t*),
//     Fma(a, b, acc), Store(float*, V), Scale(V, float),
//     and the choices of the first row tile's copy (CopyingPanel), measured per ISA:
//     kCopiedRows (rows of W per copied slice), kCopyAfterTiles, kCopyNarrowAfterTiles,
//     kCopyShortAfterTiles, kCopyShortNarrowAfterTiles (copy with more tiles of rows of A than
//     that, per kind of W: see CopyAfterTiles; 0: never), kL1AheadRows (rows of the L1
//     prefetch of the copying tile; 0: none), kMergeLastTile (see TileRows) and
//     kAxpyFromBytes (three or four rows of A in axpy form from this many bytes of W: see
//     AxpyForm in panel_gemm.h);
//     optionally kBlockRows, kBlockAheadPanels, kBlockMaxRows, kWideBlockRows,
//     kWideBlockMaxRows, kWideBlockFromRows, kWideFewBlockRows, kWideFewMaxRows,
//     kBigABlockRows, kBigAMaxRows and kBigAFromBytes: the panels walked in blocks of K (see
//     BlockedPanels and BigABlocks; without kBlockRows, or 0, never);
//     optionally kSpreadFromTiles and kSpreadRows: from that many row tiles, a float32 W's copy
//     spread over the tiles, in slices of kSpreadRows rows of W (see SpreadPanels; without
//     them, never).
// As for RowDot (row_dot_impl.h), each file's instantiations live in its own namespace.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/panel_gemm.h"
#include "cpu/prefetch.h"
#include "cpu/scratch.h"

namespace icl::cpu::ICL_ISA_NS {

// Rows rows of A times a panel of Lanes vectors of W's columns, over k rows of W; the
// accumulators stay in registers. `next`, when not null, is the part of W read after this one:
// its first min(k, next_rows) rows are prefetched into L2 as the loop walks K (W's rows are far
// apart, so the hardware prefetcher does not follow). With kCopy, each row of the panel is
// also stored as float32 into `copy`, row after row (see CopyingPanel), and with `ahead` > 0
// the row of the panel that many rows ahead is prefetched into L1. A slice of K that is not
// the `first` adds to the partial sums in y; only the `last` one scales them by alpha.
template <int Rows, int Lanes, bool kCopy = false, typename TW>
ICL_TARGET void Tile(const float* a, int64_t lda, int64_t k, const TW* w, int64_t ldw,
                     const TW* next, int64_t next_rows, float* copy, int64_t ahead, float alpha,
                     float* y, int64_t ldy, bool first, bool last) {
  typename Simd::V acc[Rows][Lanes];
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l)
      acc[r][l] = first ? Simd::Zero() : Simd::Load(y + r * ldy + l * Simd::kWidth);
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  constexpr int64_t kPanelBytes = kCols * int64_t{sizeof(TW)};
  const int64_t prefetched = next == nullptr ? 0 : std::min(k, next_rows);
  // The loop without the extras, its own loop: the row tiles after the first no longer test
  // them per step of K (AVX2, one core, W warm, ms: 768x768 M=8 0.114 -> 0.107, M=16 0.186
  // -> 0.180; 768x3072 M=128 6.01 -> 5.75; 3072x768 M=16 0.863 -> 0.830).
  // (`if constexpr`: with a plain `if`, GCC kept the copying tile's accumulators on the stack,
  // AVX-512 K=3072, N=768, M=64 1.5x slower.)
  if constexpr (!kCopy) {
    if (prefetched == 0 && ahead == 0) {
      for (int64_t kk = 0; kk < k; ++kk) {
        typename Simd::V wv[Lanes];
        for (int l = 0; l < Lanes; ++l) wv[l] = Simd::LoadW(w + kk * ldw + l * Simd::kWidth);
        for (int r = 0; r < Rows; ++r) {
          const typename Simd::V av = Simd::Broadcast(a[r * lda + kk]);
          for (int l = 0; l < Lanes; ++l) acc[r][l] = Simd::Fma(av, wv[l], acc[r][l]);
        }
      }
      k = 0;
    }
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    typename Simd::V wv[Lanes];
    for (int l = 0; l < Lanes; ++l) wv[l] = Simd::LoadW(w + kk * ldw + l * Simd::kWidth);
    if constexpr (kCopy) {
      for (int l = 0; l < Lanes; ++l) Simd::Store(copy + kk * kCols + l * Simd::kWidth, wv[l]);
    }
    if (ahead != 0 && kk + ahead < k) {
      const char* line = reinterpret_cast<const char*>(w + (kk + ahead) * ldw);
      for (int64_t b = 0; b < kPanelBytes; b += 64) __builtin_prefetch(line + b, 0, 3);
    }
    if (kk < prefetched) {
      const char* line = reinterpret_cast<const char*>(next + kk * ldw);
      for (int64_t b = 0; b < kPanelBytes; b += 64) __builtin_prefetch(line + b, 0, 2);
    }
    for (int r = 0; r < Rows; ++r) {
      const typename Simd::V av = Simd::Broadcast(a[r * lda + kk]);
      for (int l = 0; l < Lanes; ++l) acc[r][l] = Simd::Fma(av, wv[l], acc[r][l]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l)
      Simd::Store(y + r * ldy + l * Simd::kWidth,
                  last ? Simd::Scale(acc[r][l], alpha) : acc[r][l]);
}

// A tile of `rows` rows, 0 < rows <= Max (the rows left below a whole tile); the other
// parameters: as for Tile.
template <int Max, int Lanes, bool kCopy = false, typename TW>
ICL_TARGET void Remainder(int64_t rows, const float* a, int64_t lda, int64_t k, const TW* w,
                          int64_t ldw, const TW* next, int64_t next_rows, float* copy,
                          int64_t ahead, float alpha, float* y, int64_t ldy, bool first,
                          bool last) {
  if constexpr (Max > 0) {
    if (rows == Max) {
      return Tile<Max, Lanes, kCopy>(a, lda, k, w, ldw, next, next_rows, copy, ahead, alpha, y,
                                     ldy, first, last);
    }
    Remainder<Max - 1, Lanes, kCopy>(rows, a, lda, k, w, ldw, next, next_rows, copy, ahead,
                                     alpha, y, ldy, first, last);
  }
}

// Rows of the next row tile of Panel and CopyingPanel with `left` rows of A left: whole tiles
// of Rows, then the rest; with Simd::kMergeLastTile, a last tile of 1-3 rows is merged with the one
// before and the two split evenly (8 rows: 4 + 4, not 6 + 2): a tile of Lanes x r
// accumulators with r < 4 has fewer chains than the FMA latency times the two FMA pipes need,
// and runs at r / 4 of the peak.
template <int Rows>
constexpr int64_t TileRows(int64_t left) {
  if (left <= Rows) return left;
  if (Simd::kMergeLastTile && left < Rows + 4) return (left + 1) / 2;
  return Rows;
}

// All rows of A against one panel of Lanes vectors of columns, in tiles of Rows rows (a slice
// of K: see Tile).
template <int Rows, int Lanes, typename TW>
ICL_TARGET void Panel(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                      int64_t ldw, const TW* next, float alpha, float* y, int64_t ldy,
                      bool first = true, bool last = true) {
  for (int64_t r = 0, t; r < m; r += t, next = nullptr) {
    t = TileRows<Rows>(m - r);
    if (t == Rows) {
      Tile<Rows, Lanes>(a + r * lda, lda, k, w, ldw, next, k, nullptr, 0, alpha, y + r * ldy,
                        ldy, first, last);
    } else {
      Remainder<Rows - 1, Lanes>(t, a + r * lda, lda, k, w, ldw, next, k, nullptr, 0, alpha,
                                 y + r * ldy, ldy, first, last);
    }
  }
}

// All rows of A, more than one tile, against k rows of one panel of W: the first tile reads
// the panel in place and copies each row it reads into `copy` (as float32, kCols apart), which
// the other tiles then read contiguously. So W is read from memory once, converted once, and
// never re-read with the stride whose rows alias in L1 (K=768, N=3072, AVX2: every row of a
// panel in one L1 set) or miss the TLB. The copy costs the first tile a store per vector of W
// (AVX-512, 8 x 3 tile, all in cache: 102 against 116 GFLOP/s), while a copy made ahead of the
// tiles waited on memory for every row of W, the core computing nothing meanwhile (K=3072,
// N=768, one thread, in ORT, alternated: M=64 0.79-0.81 and M=128 0.87-0.89 of that time).
// `next` and next_rows: as for Tile, the part of W read after this one; `ahead`: the L1
// prefetch of the first tile.
template <int Rows, int Lanes, typename TW>
ICL_TARGET void CopyingPanel(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                             int64_t ldw, const TW* next, int64_t next_rows, float* copy,
                             int64_t ahead, float alpha, float* y, int64_t ldy, bool first,
                             bool last) {
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  int64_t r = TileRows<Rows>(m);
  Remainder<Rows, Lanes, true>(r, a, lda, k, w, ldw, next, next_rows, copy, ahead, alpha, y,
                               ldy, first, last);
  for (int64_t t; r < m; r += t) {
    t = TileRows<Rows>(m - r);
    Remainder<Rows, Lanes>(t, a + r * lda, lda, k, static_cast<const float*>(copy), kCols,
                           static_cast<const float*>(nullptr), 0, nullptr, 0, alpha,
                           y + r * ldy, ldy, first, last);
  }
}

// The traits' kSpreadFromTiles and kSpreadRows for a W of type TW: a float32 W's where the
// traits define them, else 0 (never spread; 16-bit W never is).
template <typename TW, typename S = Simd, typename = void>
struct Spread {
  static constexpr int kFromTiles = 0;
  static constexpr int64_t kRows = 0;
};
template <typename TW, typename S>
struct Spread<TW, S, std::void_t<decltype(S::kSpreadFromTiles)>> {
  static constexpr int kFromTiles = sizeof(TW) == sizeof(float) ? S::kSpreadFromTiles : 0;
  static constexpr int64_t kRows = S::kSpreadRows;
};

// Rows rows of A times k rows of a panel of W already copied (float32, kCols apart), while
// this tile also copies rows [0, copy_rows) of the panel read next (`src`, ldw apart) into
// `dst`, one row every k / copy_rows steps of K, and prefetches into L2 the same rows of the
// one after it (`ahead`, its first ahead_rows rows; null: none). The copy's loads feed only
// stores, so the FMAs, which read the copy, never wait on them (SpreadPanels).
template <int Rows, int Lanes, typename TW>
ICL_TARGET void SpreadTile(const float* a, int64_t lda, int64_t k, const float* w,
                           const TW* src, int64_t ldw, float* dst, int64_t copy_rows,
                           const TW* ahead, int64_t ahead_rows, float alpha, float* y,
                           int64_t ldy, bool first, bool last) {
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  constexpr int64_t kPanelBytes = kCols * int64_t{sizeof(TW)};
  const auto copy_row = [&](int64_t s) ICL_TARGET {
    for (int l = 0; l < Lanes; ++l) {
      Simd::Store(dst + s * kCols + l * Simd::kWidth,
                  Simd::LoadW(src + s * ldw + l * Simd::kWidth));
    }
    if (s < ahead_rows) {
      const char* line = reinterpret_cast<const char*>(ahead + s * ldw);
      for (int64_t b = 0; b < kPanelBytes; b += 64) __builtin_prefetch(line + b, 0, 2);
    }
  };
  typename Simd::V acc[Rows][Lanes];
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l)
      acc[r][l] = first ? Simd::Zero() : Simd::Load(y + r * ldy + l * Simd::kWidth);
  const int64_t every = copy_rows > 0 ? std::max<int64_t>(1, k / copy_rows) : 0;
  int64_t copied = 0;
  int64_t copy_at = copy_rows > 0 ? 0 : k;  // the step of K that copies the next row
  for (int64_t kk = 0; kk < k; ++kk) {
    if (kk == copy_at) {
      copy_row(copied++);
      copy_at = copied < copy_rows ? copy_at + every : k;
    }
    typename Simd::V wv[Lanes];
    for (int l = 0; l < Lanes; ++l) wv[l] = Simd::Load(w + kk * kCols + l * Simd::kWidth);
    for (int r = 0; r < Rows; ++r) {
      const typename Simd::V av = Simd::Broadcast(a[r * lda + kk]);
      for (int l = 0; l < Lanes; ++l) acc[r][l] = Simd::Fma(av, wv[l], acc[r][l]);
    }
  }
  while (copied < copy_rows) copy_row(copied++);  // more rows to copy than steps of K
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l)
      Simd::Store(y + r * ldy + l * Simd::kWidth,
                  last ? Simd::Scale(acc[r][l], alpha) : acc[r][l]);
}

// A SpreadTile of `rows` rows, 0 < rows <= Max; the other parameters: as for SpreadTile.
template <int Max, int Lanes, typename TW>
ICL_TARGET void SpreadRemainder(int64_t rows, const float* a, int64_t lda, int64_t k,
                                const float* w, const TW* src, int64_t ldw, float* dst,
                                int64_t copy_rows, const TW* ahead, int64_t ahead_rows,
                                float alpha, float* y, int64_t ldy, bool first, bool last) {
  if constexpr (Max > 0) {
    if (rows == Max) {
      return SpreadTile<Max, Lanes>(a, lda, k, w, src, ldw, dst, copy_rows, ahead, ahead_rows,
                                    alpha, y, ldy, first, last);
    }
    SpreadRemainder<Max - 1, Lanes>(rows, a, lda, k, w, src, ldw, dst, copy_rows, ahead,
                                    ahead_rows, alpha, y, ldy, first, last);
  }
}

// Panels of `Lanes` vectors over columns [j, n) in slices of Simd::kSpreadRows rows of W, like
// the copying walk of Panels, but each unit (a slice of a panel: panel after panel, slice
// after slice) is copied while the unit before computes: every row tile of that unit copies
// its share of the rows (SpreadTile), double-buffered, so all tiles read a copy and none waits
// on W. Only the first unit is copied as it is read, by its first row tile (CopyingPanel's).
// Where the copying tile of CopyingPanel reads one line of each of 768 rows a page or more
// apart, the core waits on each (its FMAs need the line; see the profile in
// panel_gemm_avx2.cc); spread over the tiles, those loads overlap the arithmetic. Needs two
// row tiles or more (m > Rows). Returns the first column not covered.
template <int Rows, int Lanes, typename TW>
ICL_TARGET int64_t SpreadPanels(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                                int64_t ldw, int64_t j, int64_t n, float alpha, float* y,
                                int64_t ldy) {
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  constexpr int64_t kSlice = Spread<TW>::kRows;
  const int64_t end = j + (n - j) / kCols * kCols;
  if (end == j) return j;
  const int64_t slices = (k + kSlice - 1) / kSlice;
  const int64_t units = (end - j) / kCols * slices;
  const auto unit_w = [&](int64_t u) {
    return w + (u % slices) * kSlice * ldw + j + u / slices * kCols;
  };
  const auto unit_rows = [&](int64_t u) { return std::min(kSlice, k - (u % slices) * kSlice); };
  float* buffers = ThreadScratch(ScratchSlot::kPanel, static_cast<size_t>(2 * kSlice * kCols));
  int64_t tiles = 0;
  for (int64_t r = 0, t; r < m; r += t, ++tiles) t = TileRows<Rows>(m - r);
  for (int64_t u = 0; u < units; ++u) {
    const int64_t k0 = (u % slices) * kSlice;
    const int64_t rows = unit_rows(u);
    const bool first = k0 == 0, last = k0 + rows >= k;
    float* y_panel = y + j + u / slices * kCols;
    float* copy = buffers + (u % 2) * kSlice * kCols;
    float* next_copy = buffers + (u + 1) % 2 * kSlice * kCols;
    const TW* next = u + 1 < units ? unit_w(u + 1) : nullptr;
    const int64_t next_rows = u + 1 < units ? unit_rows(u + 1) : 0;
    const TW* ahead = u + 2 < units ? unit_w(u + 2) : nullptr;
    const int64_t ahead_rows = u + 2 < units ? unit_rows(u + 2) : 0;
    int64_t r = 0, tile = 0;
    if (u == 0) {
      r = TileRows<Rows>(m);
      Remainder<Rows, Lanes, true>(r, a, lda, rows, unit_w(0), ldw,
                                   static_cast<const TW*>(nullptr), 0, copy, 0, alpha, y_panel,
                                   ldy, first, last);
      tile = 1;
    }
    // The next unit's rows, in equal shares over this unit's tiles left.
    const int64_t share = (next_rows + (tiles - tile) - 1) / std::max<int64_t>(1, tiles - tile);
    for (int64_t s0 = 0, t; r < m; r += t, s0 += share) {
      t = TileRows<Rows>(m - r);
      const int64_t s = std::min(next_rows, s0);
      const int64_t count = std::min(next_rows, s0 + share) - s;
      SpreadRemainder<Rows, Lanes>(t, a + r * lda + k0, lda, rows, copy,
                                   next == nullptr ? next : next + s * ldw, ldw,
                                   next_copy + s * kCols, count,
                                   ahead == nullptr ? ahead : ahead + s * ldw,
                                   std::max<int64_t>(0, ahead_rows - s), alpha,
                                   y_panel + r * ldy, ldy, first, last);
    }
  }
  return end;
}

// From this many rows of float32 W, a panel read in place no longer stays in cache.
constexpr int64_t kPackFromRows = 1024;

// A float32 W whose rows are at most this many bytes apart is narrow (see Panels).
constexpr int64_t kNarrowRowBytes = 3072;

// A float32 W whose rows are a multiple of this many bytes apart (they share their offset in
// a page) is copied beyond one row tile, whatever the traits choose for its size (see
// CopyAfterTiles).
constexpr int64_t kAliasedRowBytes = 4096;

// With more rows of A than this many tiles, Panels copies each panel of W by its first row
// tile (CopyingPanel); 0: never. Per kind of W, as the traits choose (16-bit W counts as
// wide, as its rows are read converted), except a float32 W whose rows share their offset in
// a page: read in place, a panel's rows then fall into one set of L1 and a 64th of L2's sets
// (2 MB, 16 ways: 512 rows of the 768 of K=768, N=3072), so each row tile re-reads the panel
// from L3. Intel Xeon (AVX-512, 2 MB L2), in ORT, one thread, K=768, N=3072, alternated,
// median of 15 runs, copied / in place: M=16 0.78, M=32 0.64, M=64 0.58, M=256 0.53 (AVX-512
// read such a short W in place: on an AMD EPYC, 1 MB L2, the copy had measured 3-10% slower;
// AVX2's traits already copy it).
template <typename TW>
constexpr int64_t CopyAfterTiles(int64_t k, int64_t ldw) {
  if constexpr (sizeof(TW) != sizeof(float)) {
    return Simd::kCopyAfterTiles;
  } else {
    const int64_t row_bytes = ldw * int64_t{sizeof(TW)};
    if (row_bytes % kAliasedRowBytes == 0) return 1;
    const bool narrow = row_bytes <= kNarrowRowBytes;
    if (k >= kPackFromRows) return narrow ? Simd::kCopyNarrowAfterTiles : Simd::kCopyAfterTiles;
    return narrow ? Simd::kCopyShortNarrowAfterTiles : Simd::kCopyShortAfterTiles;
  }
}

// The traits' kBlockRows, kBlockAheadPanels, kBlockMaxRows, kWideBlockRows,
// kWideBlockMaxRows, kWideBlockFromRows, kWideFewBlockRows, kWideFewMaxRows, kBigABlockRows,
// kBigAMaxRows and kBigAFromBytes where they define them, else zeros (no walk in blocks of K).
template <typename S, typename = void>
struct BlockingOf {
  static constexpr int64_t kRows = 0, kAheadPanels = 0, kMaxRows = 0, kWideRows = 0,
                           kWideMaxRows = 0, kWideFromRows = 0, kWideFewRows = 0,
                           kWideFewMaxRows = 0, kBigARows = 0, kBigAMaxRows = 0,
                           kBigAFromBytes = 0;
};
template <typename S>
struct BlockingOf<S, std::void_t<decltype(S::kBlockRows)>> {
  static constexpr int64_t kRows = S::kBlockRows, kAheadPanels = S::kBlockAheadPanels,
                           kMaxRows = S::kBlockMaxRows, kWideRows = S::kWideBlockRows,
                           kWideMaxRows = S::kWideBlockMaxRows,
                           kWideFromRows = S::kWideBlockFromRows,
                           kWideFewRows = S::kWideFewBlockRows,
                           kWideFewMaxRows = S::kWideFewMaxRows,
                           kBigARows = S::kBigABlockRows, kBigAMaxRows = S::kBigAMaxRows,
                           kBigAFromBytes = S::kBigAFromBytes;
};
using Blocking = BlockingOf<Simd>;

// Whether m rows of A beyond Blocking::kMaxRows (up to Blocking::kBigAMaxRows) against k rows of
// a float32 W whose rows are not wide walk the panels in blocks of Blocking::kBigARows rows of
// W: where A spans at least Blocking::kBigAFromBytes, so that a block of A stays in L2 for all
// the panels (0: never; 16-bit W not measured).
template <typename TW>
bool BigABlocks(int64_t m, int64_t k, bool wide) {
  return std::is_same_v<TW, float> && Blocking::kBigAFromBytes > 0 && !wide &&
         m > Blocking::kMaxRows && m <= Blocking::kBigAMaxRows &&
         m * k * int64_t{sizeof(float)} >= Blocking::kBigAFromBytes;
}

// Whether W's rows, ldw elements apart, are wide (kWideBlockRowBytes, panel_gemm.h): blocks of
// Blocking::kWideFewRows rows of W from Blocking::kWideFromRows rows of A up to
// Blocking::kWideFewMaxRows, of Blocking::kWideRows beyond up to Blocking::kMaxRows, of
// Blocking::kRows beyond, up to Blocking::kWideMaxRows (see BlockedPanels).
template <typename TW>
constexpr bool WideRows(int64_t ldw) {
  return ldw * int64_t{sizeof(TW)} >= kWideBlockRowBytes;
}

// Panels of `Lanes` vectors over columns [j, n) in blocks of kb rows of W: every panel of the
// columns for one block of K, then the next block, the partial sums kept in y between blocks.
// A panel walk over all of K reads one cache line from each of K rows of W for each panel:
// when W's rows are 3 KB or more apart, each line is in another 4 KB page (K=768, N=32000:
// 768 pages per panel of 64 bytes), the hardware prefetcher does not follow, and the next
// panel's lines, prefetched while this one computes, arrive too late. Here one block's kb
// rows (kb pages or a few more) serve all panels of the task's columns, in the order of their
// lines, and the panel Simd::kBlockAheadPanels to the right (past the columns: the next
// block's) is prefetched into L2 as each panel computes. Where more row tiles follow, the
// first copies each block of a panel for them (CopyingPanel, the rule of Panels). AVX2, one
// core, PanelGemm alone over tasks of 512 columns (192 at N=768), loaded machine (load 5),
// fastest of 5-7 alternated runs, ms, whole K -> blocks of 128 rows, four panels ahead:
// K=768, N=32000, M=6 23.2 -> 7.3, M=8 21.1 -> 9.3, M=16 26.9 -> 12.0; K=768, N=3072, M=4
// 0.56 -> 0.46, M=16 1.77 -> 1.14; K=3072, N=768, M=4 0.82 -> 0.35, M=8 1.83 -> 0.54, M=16
// 2.77 -> 0.88. (Whole K with four panels ahead: K=768, N=32000, M=8 10.8-11.7; blocks of 32
// rows with one panel ahead: 17.8.) The gain depends on what the other processes do to
// memory: at another moment (load 10) the median of 60 alternated ratios blocks / whole K
// was K=768, N=32000, M=6 0.85, M=8 0.83, M=16 0.90; K=768, N=3072, M=4 0.86, M=8 0.84;
// K=3072, N=768, M=8 0.91. W's rows 16 KB or more apart take blocks of 64 rows (K=768,
// N=32000, blocks of 64 / of 128, median of 8-25 alternated ratios, loaded machine: M=6
// 0.82, M=8 0.81-0.92, M=16 0.85-0.93; K=768, N=3072, M=16 1.10; K=3072, N=768, M=8 1.05).
// (Those are an AMD EPYC's numbers; the block sizes each ISA takes now, and where they were
// measured, are in its traits: panel_gemm_avx2.cc, panel_gemm_avx512.cc.)
template <int Rows, int Lanes, typename TW>
ICL_TARGET int64_t BlockedPanels(const float* a, int64_t lda, int64_t m, int64_t k,
                                 const TW* w, int64_t ldw, int64_t j, int64_t n, float alpha,
                                 float* y, int64_t ldy) {
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  const bool wide = WideRows<TW>(ldw);
  int64_t kb = Blocking::kRows;
  if (BigABlocks<TW>(m, k, wide)) {
    kb = Blocking::kBigARows;
  } else if (wide && m <= Blocking::kWideFewMaxRows) {
    kb = Blocking::kWideFewRows;
  } else if (wide && m <= Blocking::kMaxRows) {
    kb = Blocking::kWideRows;
  }
  constexpr int64_t kAhead = Blocking::kAheadPanels * kCols;  // columns
  const int64_t end = j + (n - j) / kCols * kCols;
  if (end == j) return j;
  const int64_t tiles = CopyAfterTiles<TW>(k, ldw);
  const bool copying = tiles > 0 && m > tiles * Rows;
  float* copy =
      copying ? ThreadScratch(ScratchSlot::kPanel, static_cast<size_t>(kb * kCols)) : nullptr;
  for (int64_t k0 = 0; k0 < k; k0 += kb) {
    const int64_t rows = std::min(kb, k - k0);
    const bool first = k0 == 0;
    const bool last = k0 + rows >= k;
    const TW* block = w + k0 * ldw;
    for (int64_t c = j; c < end; c += kCols) {
      const TW* next = nullptr;  // the panel kAhead columns on, in this block or the next
      int64_t next_rows = 0;
      if (c + kAhead < end) {
        next = block + c + kAhead;
        next_rows = rows;
      } else if (!last) {
        next = block + rows * ldw + j + (c + kAhead - end) % (end - j);
        next_rows = std::min(kb, k - k0 - rows);
      }
      if (copying) {
        CopyingPanel<Rows, Lanes>(a + k0, lda, m, rows, block + c, ldw, next, next_rows, copy, 0,
                                  alpha, y + c, ldy, first, last);
        continue;
      }
      for (int64_t r = 0, t; r < m; r += t, next = nullptr) {
        t = TileRows<Rows>(m - r);
        Remainder<Rows, Lanes>(t, a + r * lda + k0, lda, rows, block + c, ldw, next, next_rows,
                               nullptr, 0, alpha, y + r * ldy + c, ldy, first, last);
      }
    }
  }
  return end;
}

// Panels of `Lanes` vectors over columns [j, n); returns the first column not covered.
// With more rows of A than CopyAfterTiles tiles, each panel is copied (as float32),
// Simd::kCopiedRows rows at a time, by its first row tile into a contiguous per-thread buffer
// that the other tiles read (CopyingPanel). Read in place, a panel is a few cache lines from
// each of k rows of W a few KB apart: those addresses fall into a few cache sets, and past
// about a thousand rows the panel is evicted between tiles, so each tile re-reads it from
// memory (a copy made ahead of the tiles, in ORT, two threads, ms in place -> copied: float32
// K=2112, N=768, M=128 8.5 -> 4.2; float16 K=768, N=30000, M=16 12.2 -> 8.3, M=256 84 -> 59).
// Whether a shorter or narrower W, or fewer rows of A, pay for the copy differs per ISA: the
// measurements are with the constants in each traits struct. Where the traits spread the copy
// over the row tiles (Spread), SpreadPanels walks the panels instead.
template <int Rows, int Lanes, typename TW>
ICL_TARGET int64_t Panels(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                          int64_t ldw, int64_t j, int64_t n, float alpha, float* y,
                          int64_t ldy) {
  if constexpr (Blocking::kRows > 0) {
    const bool wide = WideRows<TW>(ldw);
    if (((m <= Blocking::kMaxRows || (wide && m <= Blocking::kWideMaxRows)) &&
         (!wide || m >= Blocking::kWideFromRows) && k > Blocking::kRows) ||
        BigABlocks<TW>(m, k, wide)) {
      return BlockedPanels<Rows, Lanes>(a, lda, m, k, w, ldw, j, n, alpha, y, ldy);
    }
  }
  if constexpr (Spread<TW>::kFromTiles > 0) {
    if (m > (Spread<TW>::kFromTiles - 1) * Rows) {
      return SpreadPanels<Rows, Lanes>(a, lda, m, k, w, ldw, j, n, alpha, y, ldy);
    }
  }
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  constexpr int64_t kSlice = Simd::kCopiedRows;
  const int64_t tiles = CopyAfterTiles<TW>(k, ldw);
  const bool copying = tiles > 0 && m > tiles * Rows;
  float* copy =
      copying ? ThreadScratch(ScratchSlot::kPanel, static_cast<size_t>(kSlice * kCols)) : nullptr;
  // The L1 prefetch only where W's rows share pages (under 4 KB apart).
  const int64_t ahead = ldw * int64_t{sizeof(TW)} < 4096 ? Simd::kL1AheadRows : 0;
  for (; j + kCols <= n; j += kCols) {
    const TW* next_panel = j + 2 * kCols <= n ? w + j + kCols : nullptr;
    if (!copying) {
      Panel<Rows, Lanes>(a, lda, m, k, w + j, ldw, next_panel, alpha, y + j, ldy);
      continue;
    }
    for (int64_t k0 = 0; k0 < k; k0 += kSlice) {
      const int64_t rows = std::min(kSlice, k - k0);
      const bool more = k0 + rows < k;  // the next slice is this panel's, else the next panel's
      CopyingPanel<Rows, Lanes>(a + k0, lda, m, rows, w + k0 * ldw + j, ldw,
                                more ? w + (k0 + rows) * ldw + j : next_panel,
                                more ? k - k0 - rows : k, copy, ahead, alpha, y + j, ldy,
                                k0 == 0, !more);
    }
  }
  return j;
}

// v, kept in a register that the compiler cannot turn back into a memory operand: g++ folds
// the load of a vector of W into each FMA that uses it, so that AxpyRows<2> loaded every W
// vector twice (and its loads, not its FMAs, bounded it). AxpyRows that Fold leave W's loads
// to the compiler: one row of A (each W vector used once), and with AVX2 (vectors of 32
// bytes) two rows where W streams from memory (StreamsFromMemory), where the
// shorter loop measured faster, as RowDot's did (row_dot_impl.h, Tile): in ORT, one thread,
// K=768, N=32000, plain, M=2, thread CPU time, 40 alternated rounds, folded / pinned: AVX2
// 0.91 (p10-p90 0.84-1.00), AVX-512 1.13 (1.07-1.17), so not with AVX-512.
constexpr bool kAxpyFoldTwoRows = Simd::kWidth * sizeof(float) == 32;
template <typename V>
ICL_TARGET V InRegister(V v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+v"(v));
#endif
  return v;
}

// Makes v opaque to the optimizer (an empty asm statement that "modifies" it in a register).
template <typename T>
inline void Opaque(T& v) {
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+r"(v));
#endif
}

// AxpyRows prefetches the rows of its next pass where a pass reads at most this many bytes of
// W, else each row this many bytes ahead (see AxpyRows).
constexpr int64_t kAxpyAheadPassBytes = int64_t{256} << 10;
constexpr int64_t kAxpyAheadInRowBytes = 4096;

// A few rows of A, in axpy form: y[0..Rows)[0, n) stays in L1 while W's rows stream past it,
// kStep at a time, each read as one contiguous run of n elements. A panel walk reads each row
// of W in pieces of 256 bytes, each in another page when W is wide (N = 32000: 128 KB apart),
// so it pays a TLB miss per piece and the hardware prefetcher never locks on; here a row is
// one run of n elements and the rows kStep ahead are prefetched by hand as the loop walks n.
template <int Rows, bool Fold, typename TW>
ICL_TARGET void AxpyRows(const float* a, int64_t lda, int64_t k, const TW* w, int64_t ldw,
                         int64_t n, float alpha, float* y, int64_t ldy) {
  constexpr int64_t kW = Simd::kWidth;
  constexpr int kStep = Rows <= 2 ? 8 : 4;  // rows of W per pass over y
  // Where a pass reads at most kAxpyAheadPassBytes of W, the prefetch is of the next pass's
  // rows at the same columns; a task of whole long rows (SplitK over a wide W, matmul.cc:
  // a pass of 1 MB at K=768, N=32000) would so prefetch a MB ahead, out of L2 before it is
  // read, and there each row is prefetched kAxpyAheadInRowBytes (a page) ahead instead. In ORT
  // (ORT's MLAS capped to AVX2), one thread, K=768, N=32000, split along K, time / 866b5ba's
  // tasks along N in another session (W elsewhere: two sessions of the same code differ by up
  // to 0.90), loaded machine (load 3-4), medians of 60 alternated runs: the row 4 KB ahead M=1
  // 0.84, M=2 0.77 (2 KB ahead 0.84, 0.79); no software prefetch 1.02, 0.90 (with three and
  // four rows split too: 1.12 and 1.31 against 0.85 and 0.83 with the prefetch).
  const bool next_pass = int64_t{kStep} * n * int64_t{sizeof(TW)} <= kAxpyAheadPassBytes;
  const int64_t ahead_by = next_pass ? kStep * ldw : kAxpyAheadInRowBytes / int64_t{sizeof(TW)};
  const int64_t nv = n / kW * kW;
  // Columns per cache line of W (one prefetch of each row per line).
  constexpr int64_t kLine = std::max<int64_t>(kW, 64 / int64_t{sizeof(TW)});
  for (int r = 0; r < Rows; ++r)
    for (int64_t j = 0; j < n; ++j) y[r * ldy + j] = 0.0f;
  int64_t kk = 0;
  for (; kk + kStep <= k; kk += kStep) {
    const TW* wr[kStep];
    typename Simd::V ak[kStep][Rows];
    for (int s = 0; s < kStep; ++s) {
      wr[s] = w + (kk + s) * ldw;
      for (int r = 0; r < Rows; ++r) ak[s][r] = Simd::Broadcast(a[r * lda + kk + s]);
    }
    const bool ahead = !next_pass || kk + 2 * kStep <= k;
    // Each row of W through its own pointer, the prefetched rows as those pointers plus one
    // byte offset (x86's base + index), as g++ compiles it. Both opaque to clang (the wheel's
    // compiler), whose loop strength reduction otherwise made sixteen pointers of them (or a
    // chain of additions per step) and reloaded six from the stack on every step of n (1.12-1.27x
    // g++'s time at one row of A).
    for (int s = 0; s < kStep; ++s) Opaque(wr[s]);
    const auto columns = [&](int64_t j) ICL_TARGET {
      typename Simd::V acc[Rows];
      for (int r = 0; r < Rows; ++r) acc[r] = Simd::Load(y + r * ldy + j);
      for (int s = 0; s < kStep; ++s) {
        typename Simd::V wv = Simd::LoadW(wr[s] + j);
        if constexpr (!Fold) wv = InRegister(wv);
        for (int r = 0; r < Rows; ++r) acc[r] = Simd::Fma(ak[s][r], wv, acc[r]);
      }
      for (int r = 0; r < Rows; ++r) Simd::Store(y + r * ldy + j, acc[r]);
    };
    const auto prefetch = [&](int64_t j) ICL_TARGET {
      int64_t at = (j + ahead_by) * int64_t{sizeof(TW)};
      Opaque(at);
      for (int s = 0; s < kStep; ++s)
        __builtin_prefetch(reinterpret_cast<const char*>(wr[s]) + at, 0, 2);
    };
    int64_t j = 0;
    if (ahead) {
      for (; j + kLine <= nv; j += kLine) {
        prefetch(j);
        for (int64_t u = 0; u < kLine; u += kW) columns(j + u);
      }
    }
    for (; j < nv; j += kW) {
      if (ahead && (j * int64_t{sizeof(TW)}) % 64 == 0) prefetch(j);
      columns(j);
    }
    for (int r = 0; r < Rows; ++r) {
      for (int64_t j = nv; j < n; ++j) {
        float sum = y[r * ldy + j];
        for (int s = 0; s < kStep; ++s) sum += a[r * lda + kk + s] * ToFloat(wr[s][j]);
        y[r * ldy + j] = sum;
      }
    }
  }
  for (; kk < k; ++kk) {
    const TW* wr = w + kk * ldw;
    for (int r = 0; r < Rows; ++r) {
      const typename Simd::V ak = Simd::Broadcast(a[r * lda + kk]);
      float* yr = y + r * ldy;
      for (int64_t j = 0; j < nv; j += kW)
        Simd::Store(yr + j, Simd::Fma(ak, Simd::LoadW(wr + j), Simd::Load(yr + j)));
      for (int64_t j = nv; j < n; ++j) yr[j] += a[r * lda + kk] * ToFloat(wr[j]);
    }
  }
  for (int r = 0; r < Rows; ++r) {
    float* yr = y + r * ldy;
    for (int64_t j = 0; j < nv; j += kW)
      Simd::Store(yr + j, Simd::Scale(Simd::Load(yr + j), alpha));
    for (int64_t j = nv; j < n; ++j) yr[j] *= alpha;
  }
}

// The traits' kAxpyUpToK and kAxpyBelowRowBytes where they define them, else 0 and no limit
// (see AxpyForm in panel_gemm.h).
template <typename S, typename = void>
struct AxpyRuleOf {
  static constexpr int64_t kUpToK = 0, kBelowRowBytes = INT64_MAX;
};
template <typename S>
struct AxpyRuleOf<S, std::void_t<decltype(S::kAxpyUpToK)>> {
  static constexpr int64_t kUpToK = S::kAxpyUpToK, kBelowRowBytes = S::kAxpyBelowRowBytes;
};

// Whether m rows of A against k rows of W row_bytes apart are computed in axpy form.
inline bool Axpy(int64_t m, int64_t k, int64_t row_bytes) {
  using Rule = AxpyRuleOf<Simd>;
  return AxpyForm(m, k, row_bytes, Simd::kAxpyFromBytes, Rule::kUpToK, Rule::kBelowRowBytes);
}

// The traits' kSplitKNarrowMaxRows and kSplitKStreamMaxRows where they define them, else
// zeros (see KSplitRule in panel_gemm.h).
template <typename S, typename = void>
struct KSplitOf {
  static constexpr int64_t kNarrowMaxRows = 0, kStreamMaxRows = 0;
};
template <typename S>
struct KSplitOf<S, std::void_t<decltype(S::kSplitKNarrowMaxRows)>> {
  static constexpr int64_t kNarrowMaxRows = S::kSplitKNarrowMaxRows,
                           kStreamMaxRows = S::kSplitKStreamMaxRows;
};

inline KSplitRule SplitRule() {
  using Split = KSplitOf<Simd>;
  return KSplitRule{Split::kNarrowMaxRows, Split::kStreamMaxRows};
}

// Whether m rows of A are computed in tiles of the alternative tile: when they are whole tiles
// of it (AVX-512 8 x 3: M=8, K=768, N=768, 0.082 ms against 0.102 in tiles of 6 + 2 rows;
// M=16-64 as fast; slower where it would leave a remainder (M=5, 6, 12), hence only for
// multiples).
inline bool AltTile(int64_t m) {
  return Simd::kAltRows > 0 && m % std::max(Simd::kAltRows, 1) == 0;
}

// Columns of the panels that Run multiplies m rows of A by (more than kAxpyMaxRows rows).
inline int64_t Columns(int64_t m) {
  return int64_t{AltTile(m) ? Simd::kAltLanes : Simd::kLanes} * Simd::kWidth;
}

// `axpy`: one to four rows of A in axpy form whatever Axpy says (see PanelGemm).
template <typename TW>
ICL_TARGET void Run(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                    int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy, bool axpy) {
  static_assert(kAxpyMaxRows == 4, "the axpy switch covers 1 to 4 rows");
  if (axpy || Axpy(m, k, ldw * int64_t{sizeof(TW)})) {
    const bool streams = kAxpyFoldTwoRows && StreamsFromMemory(k * ldw * int64_t{sizeof(TW)});
    switch (m) {
      case 1: return AxpyRows<1, true>(a, lda, k, w, ldw, n, alpha, y, ldy);
      case 2:
        if (streams) return AxpyRows<2, true>(a, lda, k, w, ldw, n, alpha, y, ldy);
        return AxpyRows<2, false>(a, lda, k, w, ldw, n, alpha, y, ldy);
      case 3: return AxpyRows<3, false>(a, lda, k, w, ldw, n, alpha, y, ldy);
      case 4: return AxpyRows<4, false>(a, lda, k, w, ldw, n, alpha, y, ldy);
      default: break;
    }
  }
  int64_t j = 0;
  bool alt = false;
  if constexpr (Simd::kAltRows > 0) {
    alt = AltTile(m);
    if (alt) {
      j = Panels<Simd::kAltRows, Simd::kAltLanes>(a, lda, m, k, w, ldw, 0, n, alpha, y, ldy);
      j = Panels<Simd::kAltRows, 1>(a, lda, m, k, w, ldw, j, n, alpha, y, ldy);
    }
  }
  if (!alt) {
    j = Panels<Simd::kRows, Simd::kLanes>(a, lda, m, k, w, ldw, 0, n, alpha, y, ldy);
    j = Panels<Simd::kRows, 1>(a, lda, m, k, w, ldw, j, n, alpha, y, ldy);
  }
  // Fewer than kWidth columns left: plain loops.
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t jj = j; jj < n; ++jj) {
      float sum = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) sum += a[i * lda + kk] * ToFloat(w[kk * ldw + jj]);
      y[i * ldy + jj] = alpha * sum;
    }
  }
}

inline void Dispatch(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                     ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y,
                     int64_t ldy, bool axpy) {
  switch (w_type) {
    case ElemType::kFloat:
      return Run(a, lda, m, k, static_cast<const float*>(w), ldw, n, alpha, y, ldy, axpy);
    case ElemType::kFloat16:
      return Run(a, lda, m, k, static_cast<const Ort::Float16_t*>(w), ldw, n, alpha, y, ldy,
                 axpy);
    case ElemType::kBFloat16:
      return Run(a, lda, m, k, static_cast<const Ort::BFloat16_t*>(w), ldw, n, alpha, y, ldy,
                 axpy);
  }
}

}  // namespace icl::cpu::ICL_ISA_NS
