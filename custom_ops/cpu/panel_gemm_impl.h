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
//   and optionally kFusedPackRows (see FusedPackRowsOf and FusedPanels).
// As for RowDot (row_dot_impl.h), each file's instantiations live in its own namespace.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/panel_gemm.h"
#include "cpu/scratch.h"

namespace icl::cpu::ICL_ISA_NS {

// Rows rows of A times a panel of Lanes vectors of W's columns, over k rows of W; the
// accumulators stay in registers. `next`, when not null, is the same panel of the next
// column block: its rows are prefetched into L2 as the loop walks K (W's rows are far apart,
// so the hardware prefetcher does not follow). A slice of K that is not the `first` adds to
// the partial sums in y; only the `last` one scales them by alpha. With `pack`, the tile also
// stores the panel as float32 there, row after row (the fused packing of FusedPanels), and
// with `ahead` it prefetches into L1 the row of the panel that many rows ahead.
template <int Rows, int Lanes, typename TW>
ICL_TARGET void Tile(const float* a, int64_t lda, int64_t k, const TW* w, int64_t ldw,
                     const TW* next, float alpha, float* y, int64_t ldy, bool first, bool last,
                     float* pack = nullptr, int64_t ahead = 0) {
  typename Simd::V acc[Rows][Lanes];
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l)
      acc[r][l] = first ? Simd::Zero() : Simd::Load(y + r * ldy + l * Simd::kWidth);
  constexpr int64_t kPanelBytes = int64_t{Lanes} * Simd::kWidth * int64_t{sizeof(TW)};
  if (pack == nullptr && ahead == 0 && next == nullptr) {  // the loop without the extras
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
  for (int64_t kk = 0; kk < k; ++kk) {
    typename Simd::V wv[Lanes];
    for (int l = 0; l < Lanes; ++l) wv[l] = Simd::LoadW(w + kk * ldw + l * Simd::kWidth);
    if (pack != nullptr) {
      for (int l = 0; l < Lanes; ++l) Simd::Store(pack + (kk * Lanes + l) * Simd::kWidth, wv[l]);
    }
    if (ahead != 0 && kk + ahead < k) {
      const char* line = reinterpret_cast<const char*>(w + (kk + ahead) * ldw);
      for (int64_t b = 0; b < kPanelBytes; b += 64) __builtin_prefetch(line + b, 0, 3);
    }
    if (next != nullptr) {
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

// A tile of `rows` rows, 0 < rows <= Max (the rows left below a whole tile).
template <int Max, int Lanes, typename TW>
ICL_TARGET void Remainder(int64_t rows, const float* a, int64_t lda, int64_t k, const TW* w,
                          int64_t ldw, const TW* next, float alpha, float* y, int64_t ldy,
                          bool first, bool last, float* pack = nullptr, int64_t ahead = 0) {
  if constexpr (Max > 0) {
    if (rows == Max) {
      return Tile<Max, Lanes>(a, lda, k, w, ldw, next, alpha, y, ldy, first, last, pack, ahead);
    }
    Remainder<Max - 1, Lanes>(rows, a, lda, k, w, ldw, next, alpha, y, ldy, first, last, pack,
                              ahead);
  }
}

// All rows of A against one panel of Lanes vectors of columns, in tiles of Rows rows (a slice
// of K: see Tile).
template <int Rows, int Lanes, typename TW>
ICL_TARGET void Panel(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                      int64_t ldw, const TW* next, float alpha, float* y, int64_t ldy,
                      bool first = true, bool last = true) {
  int64_t r = 0;
  for (; r + Rows <= m; r += Rows, next = nullptr)
    Tile<Rows, Lanes>(a + r * lda, lda, k, w, ldw, next, alpha, y + r * ldy, ldy, first, last);
  if (r < m) {
    Remainder<Rows - 1, Lanes>(m - r, a + r * lda, lda, k, w, ldw, next, alpha, y + r * ldy, ldy,
                               first, last);
  }
}

// W's panel [k, Lanes vectors] as float32 in `out`, row after row (kCols apart). Each row of
// the panel is in another page of W, where the hardware prefetcher does not follow, so the
// rows kAhead ahead are prefetched by hand.
template <int Lanes, typename TW>
ICL_TARGET void PackPanel(const TW* w, int64_t ldw, int64_t k, float* out) {
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  constexpr int64_t kPanelBytes = kCols * int64_t{sizeof(TW)};
  constexpr int64_t kAhead = 8;
  for (int64_t kk = 0; kk < k; ++kk) {
    if (kk + kAhead < k) {
      const char* line = reinterpret_cast<const char*>(w + (kk + kAhead) * ldw);
      for (int64_t b = 0; b < kPanelBytes; b += 64) __builtin_prefetch(line + b, 0, 0);
    }
    for (int l = 0; l < Lanes; ++l) {
      const int64_t col = l * Simd::kWidth;
      Simd::Store(out + kk * kCols + col, Simd::LoadW(w + kk * ldw + col));
    }
  }
}

// Rows of W per packed slice: a slice of a 4-vector AVX-512 panel is 32 KB, which stays in
// L1 with the slice of A while every row tile reads it.
constexpr int64_t kPackedRows = 128;

// From this many rows of float32 W, a panel read in place no longer stays in cache.
constexpr int64_t kPackFromRows = 1024;

// A float32 W whose rows are at most this many bytes apart is narrow (see Panels).
constexpr int64_t kNarrowRowBytes = 3072;

// Panels of `Lanes` vectors over columns [j, n); returns the first column not covered.
// With more rows of A than two tiles hold (four for a narrow W), a panel of 16-bit W or of
// float32 W with at least kPackFromRows rows is copied (as float32), kPackedRows rows at a time,
// into a contiguous
// per-thread buffer that every row tile then reads from L1. Read in place, a panel is a few
// cache lines from each of k rows of W a few KB apart: those addresses fall into a few cache
// sets, and past about a thousand rows the panel is evicted between tiles, so each tile
// re-reads it from memory. Measured in ORT, two threads, plain view, ms before -> after:
// float32 K=2112, N=768: M=128 8.5 -> 4.2; float16 K=768, N=30000: M=16 12.2 -> 8.3,
// M=256 84 -> 59; but float32 K=768 (N=768, 2112, 30000) is as fast or faster in place
// (M=16, N=768: 0.53 in place, 0.83 packed), hence the threshold; and with two tiles or fewer
// the copy does not pay (float32 K=2112, N=768, M=8: 1.31 in place, 1.55 packed), nor with
// three or four for a narrow W (benchmarks/results/matmul_cpu_vs_3564154.md: time in place /
// packed, K=1536 and 3072, N=768, M=24 and 32, AVX-512: 0.65-0.81; AVX2, M=24: 0.97-1.01),
// while it does for wider rows (in place / packed, two threads: AVX-512 K=1536, N=1024, M=32
// 1.22 and K=3072, N=3072, M=32 1.13; AVX2 K=3072, N=1536, M=24 1.28).
template <int Rows, int Lanes, typename TW>
ICL_TARGET int64_t Panels(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                          int64_t ldw, int64_t j, int64_t n, float alpha, float* y,
                          int64_t ldy) {
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  constexpr bool kWide = sizeof(TW) == sizeof(float);
  const int64_t tiles = kWide && ldw * int64_t{sizeof(TW)} <= kNarrowRowBytes ? 4 : 2;
  const bool pack = m > tiles * Rows && (!kWide || k >= kPackFromRows);
  float* packed =
      pack ? ThreadScratch(ScratchSlot::kPanel, static_cast<size_t>(kPackedRows * kCols))
           : nullptr;
  for (; j + kCols <= n; j += kCols) {
    if (pack) {
      for (int64_t k0 = 0; k0 < k; k0 += kPackedRows) {
        const int64_t rows = std::min(kPackedRows, k - k0);
        PackPanel<Lanes>(w + k0 * ldw + j, ldw, rows, packed);
        Panel<Rows, Lanes>(a + k0, lda, m, rows, static_cast<const float*>(packed), kCols,
                     static_cast<const float*>(nullptr), alpha, y + j, ldy, k0 == 0,
                     k0 + rows == k);
      }
      continue;
    }
    const TW* next = j + 2 * kCols <= n ? w + j + kCols : nullptr;
    Panel<Rows, Lanes>(a, lda, m, k, w + j, ldw, next, alpha, y + j, ldy);
  }
  return j;
}

// Rows of W per panel slice that FusedPanels packs: Simd::kFusedPackRows where the traits
// define it, else 0 (no fused packing: Panels).
template <typename S, typename = void>
struct FusedPackRowsOf {
  static constexpr int64_t kValue = 0;
};
template <typename S>
struct FusedPackRowsOf<S, std::void_t<decltype(S::kFusedPackRows)>> {
  static constexpr int64_t kValue = S::kFusedPackRows;
};
constexpr int64_t kFusedPackRows = FusedPackRowsOf<Simd>::kValue;

// Rows of the next row tile of FusedPanels with `left` rows of A left: whole tiles of Rows,
// but a last tile of 1-3 rows is merged with the one before and the two split evenly (8 rows:
// 4 + 4, not 6 + 2): a tile of Lanes x r accumulators with r < 4 has fewer chains than the
// FMA latency times the two FMA pipes need, and runs at r / 4 of the peak.
template <int Rows>
constexpr int64_t FusedTileRows(int64_t left) {
  if (left <= Rows) return left;
  if (left < Rows + 4) return (left + 1) / 2;
  return Rows;
}

// Panels of `Lanes` vectors over columns [j, n) with more rows of A than one tile (m > Rows);
// returns the first column not covered. Each panel is taken kFusedPackRows rows of W at a
// time: the first row tile reads that slice in place (prefetching its rows into L1 when they
// share pages, as the hardware prefetcher does not follow the stride) and stores it, as
// float32, into a contiguous per-thread buffer from which every other row tile reads it. So W
// is read from memory once, converted once, and never re-read with the stride whose rows
// alias in L1 (K=768, N=3072: every row of a panel in one L1 set) or miss the TLB.
template <int Rows, int Lanes, typename TW>
ICL_TARGET int64_t FusedPanels(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                               int64_t ldw, int64_t j, int64_t n, float alpha, float* y,
                               int64_t ldy) {
  constexpr int64_t kCols = int64_t{Lanes} * Simd::kWidth;
  constexpr int64_t kSlice = kFusedPackRows;
  constexpr int64_t kAhead = 8;  // rows of the L1 prefetch
  const int64_t ahead = ldw * int64_t{sizeof(TW)} < 4096 ? kAhead : 0;
  float* packed = ThreadScratch(ScratchSlot::kPanel, static_cast<size_t>(kSlice * kCols));
  const float* pf = packed;
  for (; j + kCols <= n; j += kCols) {
    const TW* next = j + 2 * kCols <= n ? w + j + kCols : nullptr;
    for (int64_t k0 = 0; k0 < k; k0 += kSlice) {
      const int64_t rows = std::min(kSlice, k - k0);
      const bool first = k0 == 0, last = k0 + rows == k;
      int64_t r = FusedTileRows<Rows>(m);
      Remainder<Rows, Lanes>(r, a + k0, lda, rows, w + k0 * ldw + j, ldw,
                             next == nullptr ? next : next + k0 * ldw, alpha, y + j, ldy, first,
                             last, packed, ahead);
      for (int64_t t; r < m; r += t) {
        t = FusedTileRows<Rows>(m - r);
        Remainder<Rows, Lanes>(t, a + r * lda + k0, lda, rows, pf, kCols,
                               static_cast<const float*>(nullptr), alpha, y + r * ldy + j, ldy,
                               first, last);
      }
    }
  }
  return j;
}

// A few rows of A, in axpy form: y[0..Rows)[0, n) stays in L1 while W's rows stream past it,
// kStep at a time, each read as one contiguous run of n elements. A panel walk reads each row
// of W in pieces of 256 bytes, each in another page when W is wide (N = 32000: 128 KB apart),
// so it pays a TLB miss per piece and the hardware prefetcher never locks on; here a row is
// one run of n elements and the rows kStep ahead are prefetched by hand as the loop walks n.
template <int Rows, typename TW>
ICL_TARGET void AxpyRows(const float* a, int64_t lda, int64_t k, const TW* w, int64_t ldw,
                         int64_t n, float alpha, float* y, int64_t ldy) {
  constexpr int64_t kW = Simd::kWidth;
  constexpr int kStep = Rows <= 2 ? 8 : 4;  // rows of W per pass over y
  const int64_t nv = n / kW * kW;
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
    const bool ahead = kk + 2 * kStep <= k;
    const int64_t next = kStep * ldw;
    for (int64_t j = 0; j < nv; j += kW) {
      if (ahead && (j * int64_t{sizeof(TW)}) % 64 == 0) {
        for (int s = 0; s < kStep; ++s) __builtin_prefetch(wr[s] + next + j, 0, 2);
      }
      typename Simd::V acc[Rows];
      for (int r = 0; r < Rows; ++r) acc[r] = Simd::Load(y + r * ldy + j);
      for (int s = 0; s < kStep; ++s) {
        const typename Simd::V wv = Simd::LoadW(wr[s] + j);
        for (int r = 0; r < Rows; ++r) acc[r] = Simd::Fma(ak[s][r], wv, acc[r]);
      }
      for (int r = 0; r < Rows; ++r) Simd::Store(y + r * ldy + j, acc[r]);
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

template <typename TW>
ICL_TARGET void Run(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                    int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy) {
  static_assert(kAxpyMaxRows == 4, "the axpy switch covers 1 to 4 rows");
  if (PanelGemmAxpy(m, k * ldw * int64_t{sizeof(TW)})) {
    switch (m) {
      case 1: return AxpyRows<1>(a, lda, k, w, ldw, n, alpha, y, ldy);
      case 2: return AxpyRows<2>(a, lda, k, w, ldw, n, alpha, y, ldy);
      case 3: return AxpyRows<3>(a, lda, k, w, ldw, n, alpha, y, ldy);
      case 4: return AxpyRows<4>(a, lda, k, w, ldw, n, alpha, y, ldy);
      default: break;
    }
  }
  int64_t j = 0;
  bool alt = false;
  if constexpr (Simd::kAltRows > 0) {
    // Rows in whole tiles of kAltRows: the alternative tile (AVX-512 8 x 3: M=8, K=768, N=768,
    // 0.082 ms against 0.102 in tiles of 6 + 2 rows; M=16-64 as fast; slower where it would
    // leave a remainder (M=5, 6, 12), hence only for multiples).
    alt = m % Simd::kAltRows == 0;
    if (alt) {
      j = Panels<Simd::kAltRows, Simd::kAltLanes>(a, lda, m, k, w, ldw, 0, n, alpha, y, ldy);
      j = Panels<Simd::kAltRows, 1>(a, lda, m, k, w, ldw, j, n, alpha, y, ldy);
    }
  }
  bool fused = false;
  if constexpr (kFusedPackRows > 0) {
    // Not for a narrow float32 W of fewer than kPackFromRows rows with up to four tiles of
    // rows of A: its panel, re-read in place, stays in L2, and the copy did not pay (AVX2, in
    // ORT, one thread, thread CPU time, fused / in place: K=768, N=768, M=12 1.08, M=16 1.02).
    const bool narrow = sizeof(TW) == sizeof(float) &&
                        ldw * int64_t{sizeof(TW)} <= kNarrowRowBytes && k < kPackFromRows;
    fused = !alt && m > (narrow ? 4 : 1) * Simd::kRows;
    if (fused) {
      j = FusedPanels<Simd::kRows, Simd::kLanes>(a, lda, m, k, w, ldw, 0, n, alpha, y, ldy);
      j = FusedPanels<Simd::kRows, 1>(a, lda, m, k, w, ldw, j, n, alpha, y, ldy);
    }
  }
  if (!alt && !fused) {
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
                     int64_t ldy) {
  switch (w_type) {
    case ElemType::kFloat:
      return Run(a, lda, m, k, static_cast<const float*>(w), ldw, n, alpha, y, ldy);
    case ElemType::kFloat16:
      return Run(a, lda, m, k, static_cast<const Ort::Float16_t*>(w), ldw, n, alpha, y, ldy);
    case ElemType::kBFloat16:
      return Run(a, lda, m, k, static_cast<const Ort::BFloat16_t*>(w), ldw, n, alpha, y, ldy);
  }
}

}  // namespace icl::cpu::ICL_ISA_NS
