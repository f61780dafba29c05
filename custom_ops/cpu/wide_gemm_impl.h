// The body of WideGemm, written once over a SIMD traits type `Simd`.
//
// Include this only from a wide_gemm_<isa>.cc that first defines ICL_TARGET and ICL_ISA_NS
// (as for row_dot_impl.h) and, in that namespace, the traits struct `Simd`: V, kWidth
// (floats per V), kTileLanes (vectors per packed A tile, at most 4), kWRows[kTileLanes]
// (rows of W per micro-tile for A tiles of 1, 2, ... vectors: rows x lanes accumulators,
// leaving registers for the A tile and the broadcast), kSplitRows and kSplitRuns (RunSplit's
// block of rows and runs of K; kSplitRows = 0: no RunSplit), kStageBlocks, kStageFromRows
// and kStageAliasedOnly (Run stages Y's columns, kStageBlocks blocks of rows of W at a time,
// from kStageFromRows rows of A, and only where Y's rows alias in L1 if kStageAliasedOnly:
// StageY; kStageBlocks = 0: never), kGroupBytes, kGroupFromBytes and kGroupWRows (groups of
// A's tiles and blocks of W's rows: TryGroups; kGroupBytes = 0: none, the other two then
// unused), kChunkFromRows (TryChunks from that many rows of A; 0: never) and
// kChunkAliasedNarrow (TryChunks also for one tile of one vector against rows of W that alias
// in L1), kUnroll (steps of K per prefetch step in Micro), StoreTransposed(src, lds, alpha,
// dst, ldd) (dst[j * ldd + i] = alpha * src[i * lds + j] for i, j < kWidth), kStore4
// (StoreTile stores 4 rows of W at a time with Store4(out, ld, valid, alpha, y, ldy):
// y[i][0, 4) = alpha * out[0, 4)[i] for i < valid, out's rows ld apart, reading
// out[0, 4)[0, kTileRows)), Zero(), Load(const float*), Broadcast(float), Fma(a, b, acc),
// Add(a, b), Store(float*, V).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/convert.h"
#include "cpu/isa.h"
#include "cpu/prefetch.h"
#include "cpu/scratch.h"
#include "cpu/wide_gemm.h"

namespace icl::cpu::ICL_ISA_NS {

// Rows of A per packed tile at most (PackedA::tile_rows is this or one vector less).
constexpr int64_t kTileRows = Simd::kTileLanes * Simd::kWidth;

// Width of the packed tile at row m0: a multiple of kWidth, a.tile_rows but for the last.
inline int64_t TileWidth(const PackedA& a, int64_t m0) {
  return std::min(a.tile_rows, (a.m - m0 + Simd::kWidth - 1) / Simd::kWidth * Simd::kWidth);
}

// Prefetch steps of Micro over k steps of K.
constexpr int64_t Prefetches(int64_t k) { return k / Simd::kUnroll + k % Simd::kUnroll; }

// W's rows as Micro reads them: rows(r), row r's element at the current step of K.
// StridedRows: row r at w + r * ldw, one pointer moved along K by the caller.
struct StridedRows {
  const float* w;
  int64_t ldw;
  float operator()(int r) const { return w[r * ldw]; }
};
// GroupedRows: one base per four rows and the row offsets 0, ldw, 2 ldw and 3 ldw (two index
// registers, ldw and 3 ldw, with x86's scales), advanced one element a step. For more than 8
// rows StridedRows takes a pointer per row, more than the general registers hold: g++ kept
// five of the 16 rows' pointers of the AVX-512 1 x 16 tile in vector registers, moving each
// back on every step (vmovq, on the port of one of the two FMA pipes), and the 2 x 14 tile's
// in memory (four loads a step).
template <int Rows>
struct GroupedRows {
  static constexpr int kGroups = (Rows + 3) / 4;
  const float* base[kGroups];
  int64_t ldw, ldw3;
  GroupedRows(const float* w, int64_t ld) : ldw(ld), ldw3(3 * ld) {
    for (int g = 0; g < kGroups; ++g) base[g] = w + 4 * g * ld;
    // Opaque, so that g++ keeps 3 ldw in a register rather than forming it from ldw on every
    // step (a lea per group and step).
    asm("" : "+r"(ldw3));
  }
  float operator()(int r) const {
    const float* p = base[r / 4];
    switch (r % 4) {
      case 0: return p[0];
      case 1: return p[ldw];
      case 2: return p[2 * ldw];
      default: return p[ldw3];
    }
  }
  void Advance() {
    for (int g = 0; g < kGroups; ++g) ++base[g];
  }
};
// Micro reads more than this many rows of W through GroupedRows where it takes one step of K
// a pass (Simd::kUnroll = 1: AVX-512; AVX2's 1 x 12 tile, four steps a pass, not measured).
constexpr int kStridedMaxRows = 8;

// One step of K of Micro: acc[r][l] += at[l] * rows(r) (A's Lanes vectors at `at`, the
// step's element of each of W's Rows rows), with one prefetch step between A's loads and
// the FMAs if Prefetch. Both of Micro's loops call it: a function with ICL_TARGET (a lambda
// does not take Micro's target attribute unless given it, as AxpyRows' are). (With the
// prefetch step before A's loads, g++ folded A's loads into the FMAs of tiles with 2 or 3
// rows of W: one load per row.)
template <int Lanes, int Rows, bool Prefetch, class P, class R>
ICL_TARGET inline __attribute__((always_inline)) void MicroStep(
    const float* at, const R& rows, typename Simd::V (&acc)[Rows][Lanes], P& prefetch) {
  typename Simd::V a[Lanes];
  for (int l = 0; l < Lanes; ++l) a[l] = Simd::Load(at + l * Simd::kWidth);
  if constexpr (Prefetch) prefetch.Step();
  for (int r = 0; r < Rows; ++r) {
    const typename Simd::V b = Simd::Broadcast(rows(r));
    for (int l = 0; l < Lanes; ++l) acc[r][l] = Simd::Fma(a[l], b, acc[r][l]);
  }
}

// One A^T tile (Lanes vectors wide) against Rows rows of float W, over k steps of K; the
// result lands in out[Rows][kTileRows] (lanes beyond the tile's width are left untouched),
// added to what out holds where Accumulate and `add` (TryChunks' chunks of K after the first).
// P: the prefetcher, stepped as K advances (Prefetcher, or NoPrefetch).
template <int Lanes, int Rows, bool Accumulate = false, class P = Prefetcher>
ICL_TARGET void Micro(const float* at, int64_t k, const float* w, int64_t ldw, float* out,
                      P& prefetch, bool add = false) {
  constexpr int kW = Simd::kWidth;
  typename Simd::V acc[Rows][Lanes];
  if (Accumulate && add) {
    for (int r = 0; r < Rows; ++r)
      for (int l = 0; l < Lanes; ++l) acc[r][l] = Simd::Load(out + r * kTileRows + l * kW);
  } else {
    for (int r = 0; r < Rows; ++r)
      for (int l = 0; l < Lanes; ++l) acc[r][l] = Simd::Zero();
  }
  // Simd::kUnroll steps of K per pass, one prefetch step per pass (see Prefetches).
  constexpr int kU = Simd::kUnroll;
  int64_t kk = 0;
  if constexpr (kU > 1) {
    for (; kk + kU <= k; kk += kU, at += kU * Lanes * kW) {
      prefetch.Step();
      // Not unrolled: g++ then interleaved the steps, spilled two accumulators per pass and
      // folded A's loads into the FMAs (AVX2, 3 x 4 tile).
#pragma GCC unroll 1
      for (int u = 0; u < kU; ++u) {
        MicroStep<Lanes, Rows, false>(at + u * Lanes * kW, StridedRows{w + kk + u, ldw}, acc,
                                      prefetch);
      }
    }
  }
  if constexpr (kU == 1 && Rows > kStridedMaxRows) {
    // In ORT, AVX-512, 3 runs of each build alternated, 2 placements, median ICL/ORT,
    // GroupedRows / StridedRows, transposed view, one and two threads: M=16 (1 x 16) K=768,
    // N=3072 0.94 and 0.98, K=N=768 0.97 and 0.99, K=3072, N=768 0.99 and 0.98; M=32 (2 x 14)
    // 0.95-1.00, K=3072, N=768 0.83 and 0.86 (the plain view's cells, unchanged, 0.96-1.05);
    // measured with an earlier form of this (the four bases fixed, three row offsets advanced
    // each step, as g++ compiled it). This code, on a noisier machine (the plain view's cells
    // 0.91-1.18): one thread M=16 0.88-0.91, M=32 0.90-1.01; two threads 0.96-1.08.
    GroupedRows<Rows> rows(w, ldw);
    for (; kk < k; ++kk, at += Lanes * kW, rows.Advance())
      MicroStep<Lanes, Rows, true>(at, rows, acc, prefetch);
  } else {
    for (; kk < k; ++kk, at += Lanes * kW)
      MicroStep<Lanes, Rows, true>(at, StridedRows{w + kk, ldw}, acc, prefetch);
  }
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l) Simd::Store(out + r * kTileRows + l * kW, acc[r][l]);
}

template <int Rows>
ICL_TARGET void MicroAnyWidth(int64_t width, const float* at, int64_t k, const float* w,
                              int64_t ldw, float* out, Prefetcher& prefetch) {
  switch (width / Simd::kWidth) {
    case 4:
      if constexpr (Simd::kTileLanes >= 4) return Micro<4, Rows>(at, k, w, ldw, out, prefetch);
      return;
    case 3: return Micro<3, Rows>(at, k, w, ldw, out, prefetch);
    case 2: return Micro<2, Rows>(at, k, w, ldw, out, prefetch);
    default: return Micro<1, Rows>(at, k, w, ldw, out, prefetch);
  }
}

// y[i][r] = alpha * out[r][i] for the valid rows of the tile at row m0 (the tile's result
// transposed into Y). S is Simd, as a template parameter so that S::Store4 is looked up only
// where kStore4 keeps the branch: traits without kStore4 need no Store4.
template <int Rows, typename S = Simd>
ICL_TARGET void StoreTile(const PackedA& a, int64_t m0, const float* out, float alpha, float* y,
                          int64_t ldy) {
  const int64_t valid = std::min(a.tile_rows, a.m - m0);
  int r0 = 0;
  if constexpr (S::kStore4) {
    for (; r0 + 4 <= Rows; r0 += 4)
      S::Store4(out + r0 * kTileRows, kTileRows, valid, alpha, y + m0 * ldy + r0, ldy);
  }
  for (int64_t i = 0; i < valid; ++i)
    for (int r = r0; r < Rows; ++r) y[(m0 + i) * ldy + r] = alpha * out[r * kTileRows + i];
}

template <int Lanes, int Rows, int P>
ICL_TARGET void MicroSplit(const float* at, int64_t k, int64_t len, const float* w, int64_t ldw,
                           float* out, Prefetcher& prefetch);

// The traits' kNarrowSplit where they define it, else false: a last tile of A one vector wide
// after wider ones (PackedATileRows) runs as MicroSplit, K in two runs side by side, so that
// its Rows x 1 accumulators are twice as many chains against the FMA latency.
template <typename S, typename = void>
struct NarrowSplitOf {
  static constexpr bool kValue = false;
};
template <typename S>
struct NarrowSplitOf<S, std::void_t<decltype(S::kNarrowSplit)>> {
  static constexpr bool kValue = S::kNarrowSplit;
};

// Rows rows of float W against every tile of A, over all of K; writes y.
template <int Rows>
ICL_TARGET void WRowBlock(const PackedA& a, const float* w, int64_t ldw, float alpha, float* y,
                          int64_t ldy, Prefetcher& prefetch) {
  alignas(64) float out[Rows * kTileRows];
  for (int64_t m0 = 0; m0 < a.m; m0 += a.tile_rows) {
    const int64_t width = TileWidth(a, m0);
    if constexpr (NarrowSplitOf<Simd>::kValue && Rows <= Simd::kWRows[0] / 2) {
      if (width == Simd::kWidth && a.tile_rows > Simd::kWidth && a.k >= 32) {
        MicroSplit<1, Rows, 2>(a.data + m0 * a.k, a.k, a.k / 2, w, ldw, out, prefetch);
        StoreTile<Rows>(a, m0, out, alpha, y, ldy);
        continue;
      }
    }
    MicroAnyWidth<Rows>(width, a.data + m0 * a.k, a.k, w, ldw, out, prefetch);
    StoreTile<Rows>(a, m0, out, alpha, y, ldy);
  }
}

// The last rows of a task, fewer than 2 * Rows: blocks of Rows, then of Rows / 2 ... down to
// single rows (one row at a time, a tile's few accumulators wait on the FMA latency: 8 of
// the 512 rows of a task at M=32 took as long as 16).
template <int Rows>
ICL_TARGET void WRowTail(const PackedA& a, const float* w, int64_t ldw, int64_t rows, float alpha,
                         float* y, int64_t ldy, Prefetcher& prefetch) {
  for (; rows >= Rows; rows -= Rows, w += Rows * ldw, y += Rows)
    WRowBlock<Rows>(a, w, ldw, alpha, y, ldy, prefetch);
  if constexpr (Rows > 1) WRowTail<Rows / 2>(a, w, ldw, rows, alpha, y, ldy, prefetch);
}

// True when Rows rows of W `row_bytes` apart crowd the L1 cache: the micro-tile reads all of
// them at the same offset at once, and rows a multiple of 2 KB apart fall into one or two of
// its sets (8 ways of 64 sets, 4 KB per way), so that they evict each other at every step
// (K=3072, float32 W, 12 KB apart: M=16, N=768, one core, 1.65-1.71 ms in place against
// 0.75-0.80 with rows 64 bytes further apart).
template <int Rows>
bool RowsAlias(int64_t row_bytes) {
  constexpr int64_t kWay = 4096;
  int64_t g = kWay, b = row_bytes % kWay;  // gcd(row_bytes, kWay): its sets repeat every g
  while (b != 0) {
    const int64_t t = g % b;
    g = b;
    b = t;
  }
  return Rows * g / kWay > 4;  // rows per set, against half the ways
}

// True when Run stages Y: from Simd::kStageFromRows rows of A, and (kStageAliasedOnly) where
// the rows of Y, `ldy` floats apart, are a multiple of 4 KB apart (N=3072 float32: 12 KB), so
// that all fall into one set of L1, with more of them than the set holds (8): the transposing
// store of a tile (StoreTile: Rows floats into each of up to 64 rows of Y) then misses L1 on
// every row, as the rows evicted each other since the block before. Run then stages
// Simd::kStageBlocks blocks of columns in a buffer whose rows are an odd number of cache lines
// apart and copies whole runs of them into Y (CopyStaged).
// (Kernel alone, one core, AVX-512, K=768, N=3072, lowest of 4-20 runs, loaded machine,
// alternated rounds, in place -> staged ms: M=16 1.06/1.01 -> 0.77/0.69, M=64 3.46/3.14/
// 3.53/3.60/3.16 -> 3.22/2.95/3.46/3.32/2.94, M=256 13.1/12.5/13.8/13.3/12.7 -> 12.5/11.7/
// 13.3/13.7/11.7; the same stores into one row of Y, which stays in L1, took 11.3-11.5 ms at
// M=256: the misses cost about 10%. N=768, rows 3 KB apart, 16 in each of 4 sets, measured
// no faster staged (M=256 3.43/2.98/2.85 -> 3.54/2.99/2.90), so it stays in place.)
inline bool StageY(const PackedA& a, int64_t ldy) {
  return Simd::kStageBlocks > 0 && a.m >= Simd::kStageFromRows &&
         (!Simd::kStageAliasedOnly || (ldy * 4) % 4096 == 0);
}

// Floats between the staged rows of kStage columns: an odd number of cache lines.
constexpr int64_t StageStride(int64_t stage) {
  const int64_t lines = (stage + 15) / 16;
  return (lines + 1 - lines % 2) * 16;
}

// Float32 rows of W that alias in L1 (RowsAlias) against one A tile of two vectors (M=17..32
// with AVX-512), without copying them: K is cut into P runs of `len` steps that the
// micro-tile walks side by side (a remainder after them with the first run's sums), so that
// each set of L1 holds Rows rows at once, not Rows * P; the runs' sums are added at the end.
template <int Lanes, int Rows, int P>
ICL_TARGET void MicroSplit(const float* at, int64_t k, int64_t len, const float* w, int64_t ldw,
                           float* out, Prefetcher& prefetch) {
  constexpr int kW = Simd::kWidth;
  typename Simd::V acc[P][Rows][Lanes];
  for (int p = 0; p < P; ++p)
    for (int r = 0; r < Rows; ++r)
      for (int l = 0; l < Lanes; ++l) acc[p][r][l] = Simd::Zero();
  for (int64_t kk = 0; kk < len; ++kk) {
    prefetch.Step();
    for (int p = 0; p < P; ++p) {
      typename Simd::V a[Lanes];
      for (int l = 0; l < Lanes; ++l) a[l] = Simd::Load(at + (p * len + kk) * Lanes * kW + l * kW);
      for (int r = 0; r < Rows; ++r) {
        const typename Simd::V b = Simd::Broadcast(w[r * ldw + p * len + kk]);
        for (int l = 0; l < Lanes; ++l) acc[p][r][l] = Simd::Fma(a[l], b, acc[p][r][l]);
      }
    }
  }
  for (int64_t kk = P * len; kk < k; ++kk) {
    prefetch.Step();
    for (int r = 0; r < Rows; ++r) {
      const typename Simd::V b = Simd::Broadcast(w[r * ldw + kk]);
      for (int l = 0; l < Lanes; ++l)
        acc[0][r][l] = Simd::Fma(Simd::Load(at + kk * Lanes * kW + l * kW), b, acc[0][r][l]);
    }
  }
  for (int r = 0; r < Rows; ++r) {
    for (int l = 0; l < Lanes; ++l) {
      for (int p = 1; p < P; ++p) acc[0][r][l] = Simd::Add(acc[0][r][l], acc[p][r][l]);
      Simd::Store(out + r * kTileRows + l * kW, acc[0][r][l]);
    }
  }
}

// WideGemm over MicroSplit: blocks of kRows rows of W, K in kRuns runs.
// The copy of the aliasing rows (Run) stalls on W's loads ahead of the FMAs: M=16, K=3072,
// N=768, one core, 0.84-0.87 ms of which 0.2 ms the copy (0.66 ms for rows that need none).
// Kernel harness, one core, loaded machine, best of 20, alternated: M=32, K=3072, N=768
// 1.48-1.71 ms against 1.60-1.80 copied; M=20, K=1024 and 2048 5-7% faster. Tiles of one
// vector stay with the copy: 4 rows x 4 runs measured 4-18% slower than copying (M=16,
// K=512..4096). Also measured slower: copying chunk by chunk of K into a buffer that stays
// in L1 (as slow as the whole copy), and a vector a step inside the micro-tile (1.2-1.3 ms:
// its registers spilled).
template <int Lanes, int kRows, int kRuns>
ICL_TARGET void RunSplit(const PackedA& a, const float* w, int64_t ldw, int64_t rows, float alpha,
                         float* y, int64_t ldy) {
  int64_t len = a.k / kRuns;
  // Runs a multiple of 4 KB apart would share sets again: shorten them by a line.
  if (len * 4 % 4096 == 0 && len > 16) len -= 16;
  const int64_t steps = len + (a.k - kRuns * len);
  const int64_t valid = a.m;  // one tile
  alignas(64) float out[kRows * kTileRows];
  for (int64_t n = 0; n < rows; n += kRows) {
    const int64_t block = std::min<int64_t>(kRows, rows - n);
    const float* wn = w + n * ldw;
    const bool has_next = n + 2 * kRows <= rows;
    Prefetcher prefetch(has_next ? wn + kRows * ldw : nullptr,
                        has_next ? ((kRows - 1) * ldw + a.k) * 4 : 0, steps);
    if (block == kRows) {
      MicroSplit<Lanes, kRows, kRuns>(a.data, a.k, len, wn, ldw, out, prefetch);
    } else {
      for (int64_t r = 0; r < block; ++r)
        MicroSplit<Lanes, 1, kRuns>(a.data, a.k, len, wn + r * ldw, ldw, out + r * kTileRows,
                                    prefetch);
    }
    for (int64_t i = 0; i < valid; ++i)
      for (int64_t r = 0; r < block; ++r) y[i * ldy + n + r] = alpha * out[r * kTileRows + i];
  }
}

// y[i][0, cols) = stage[i][0, cols) for i < m (rows of stage ld apart).
ICL_TARGET inline void CopyStaged(const float* stage, int64_t ld, int64_t m, int64_t cols,
                                  float* y, int64_t ldy) {
  const int64_t nv = cols / Simd::kWidth * Simd::kWidth;
  for (int64_t i = 0; i < m; ++i) {
    const float* s = stage + i * ld;
    float* d = y + i * ldy;
    int64_t j = 0;
    for (; j < nv; j += Simd::kWidth) Simd::Store(d + j, Simd::Load(s + j));
    for (; j < cols; ++j) d[j] = s[j];
  }
}

// Rows of W per micro-tile: Simd::kWRows[lanes of the widest A tile - 1].
template <int Rows>
ICL_TARGET void Run(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                    float alpha, float* y, int64_t ldy) {
  constexpr int kWRows = Rows;
  const int64_t size = SizeOf(w_type);
  const char* w_bytes = static_cast<const char*>(w);
  // 16-bit W, or W whose rows alias in L1: each block's rows are copied (widened) once into
  // a per-thread buffer, 64 bytes more than K apart, and reused for every tile of A. (Copied
  // chunk by chunk of K into a buffer that stays in L1, the copy cost as much: M=16, K=3072,
  // N=768, one core, 0.84-0.88 ms either way, 0.66 ms with rows that need no copy.)
  const bool copy = w_type != ElemType::kFloat || RowsAlias<kWRows>(ldw * size);
  const int64_t ldc = (a.k + 15) / 16 * 16 + 16;
  float* buf =
      copy ? ThreadScratch(ScratchSlot::kWeights, static_cast<size_t>(kWRows * ldc)) : nullptr;
  // Y staged (see StageY): kStage columns of every row of A at a time, copied into Y whole.
  constexpr int64_t kStage = int64_t{kWRows} * Simd::kStageBlocks;
  constexpr int64_t kStageLd = StageStride(kStage);
  float* stage = nullptr;
  if constexpr (kStage > 0) {
    if (rows > kWRows && StageY(a, ldy)) {
      stage = ThreadScratch(ScratchSlot::kStagedY, static_cast<size_t>(a.m * kStageLd));
    }
  }
  for (int64_t n = 0; n < rows; n += kWRows) {
    const int block = static_cast<int>(std::min<int64_t>(kWRows, rows - n));
    const float* wf = reinterpret_cast<const float*>(w_bytes + n * ldw * size);
    int64_t ldwf = ldw;
    if (copy) {
      for (int r = 0; r < block; ++r)
        ToFloat(w_type, w_bytes + (n + r) * ldw * size, buf + r * ldc, a.k);
      wf = buf;
      ldwf = ldc;
    }
    // The next block of W streams into L2 while this one is multiplied.
    const bool has_next = n + 2 * kWRows <= rows;
    Prefetcher prefetch(has_next ? w_bytes + (n + kWRows) * ldw * size : nullptr,
                        has_next ? ((kWRows - 1) * ldw + a.k) * size : 0,
                        (a.m + a.tile_rows - 1) / a.tile_rows * Prefetches(a.k));
    // With a stage, the block's columns land in it and each group of kStage columns is
    // copied into Y once complete.
    float* yb = stage != nullptr ? stage + n % kStage : y + n;
    const int64_t ldyb = stage != nullptr ? kStageLd : ldy;
    if (block == kWRows) {
      WRowBlock<kWRows>(a, wf, ldwf, alpha, yb, ldyb, prefetch);
    } else {
      WRowTail<kWRows / 2>(a, wf, ldwf, block, alpha, yb, ldyb, prefetch);
    }
    if (stage != nullptr && ((n + block) % kStage == 0 || n + block == rows)) {
      const int64_t g0 = n / kStage * kStage, cols = n + block - g0;
      CopyStaged(stage, kStageLd, a.m, cols, y + g0, ldy);
    }
  }
}

// Micro's prefetcher where nothing is prefetched: TryChunks' tiles after the first read the
// chunk's rows of W from L2 (measured, AVX-512, kernel harness: prefetching the next
// micro-tile's sums and rows of W into L1 was 3-4% slower at M=256, K=N=768).
struct NoPrefetch {
  void Step() {}
};

// TryChunks' first tile of each chunk, which reads the chunk's rows of W from memory: the
// next micro-tile's rows (their chunk: `rows` runs of `bytes`, `stride` apart) streamed into
// L2 one line a step. Without it W's short runs (512 bytes of each row at AVX-512's 128
// steps) came from memory on demand: kernel harness, one core, K=768, N=32000, M=128,
// GFLOP/s 153 at once (Run), 120 in chunks, 155-165 in chunks with this.
struct RowsPrefetcher {
  const char* next = nullptr;
  int64_t stride = 0, bytes = 0, rows = 0, at = 0;
  void Step() {
    if (rows == 0) return;
    __builtin_prefetch(next + at, /*rw=*/0, /*locality=*/2);
    at += 64;
    if (at >= bytes) {
      at = 0;
      next += stride;
      --rows;
    }
  }
};

// y[i][n] = alpha * c[n][i] for i < valid, n < rows (c: a tile's sums, rows kTileRows apart):
// blocks of kWidth x kWidth transposed in registers (Simd::StoreTransposed), whole vectors of
// Y's rows at a time, the edges element by element.
ICL_TARGET inline void StoreChunkTile(const float* c, int64_t rows, int64_t valid, float alpha,
                                      float* y, int64_t ldy) {
  constexpr int64_t kW = Simd::kWidth;
  const int64_t rows_w = rows / kW * kW, valid_w = valid / kW * kW;
  for (int64_t n0 = 0; n0 < rows_w; n0 += kW)
    for (int64_t i0 = 0; i0 < valid_w; i0 += kW)
      Simd::StoreTransposed(c + n0 * kTileRows + i0, kTileRows, alpha, y + i0 * ldy + n0, ldy);
  for (int64_t i = 0; i < valid; ++i) {
    for (int64_t n = i < valid_w ? rows_w : 0; n < rows; ++n)
      y[i * ldy + n] = alpha * c[n * kTileRows + i];
  }
}

// One chunk of `steps` steps of K of an A^T tile (Lanes vectors wide, at `at`) against `rows`
// rows of W: micro-tiles of Rows rows, then Rows / 2 ... for the rest; their sums go to (or,
// where `add`, are added to) c[rows][kTileRows].
template <int Lanes, int Rows>
ICL_TARGET void ChunkRows(const float* at, int64_t steps, const float* w, int64_t ldw,
                          int64_t rows, float* c, bool add, bool first_tile) {
  int64_t n = 0;
  for (; n + Rows <= rows; n += Rows) {
    const float* wn = w + n * ldw;
    float* cn = c + n * kTileRows;
    if (first_tile) {
      RowsPrefetcher next;
      if (n + Rows < rows) {
        next.next = reinterpret_cast<const char*>(wn + Rows * ldw);
        next.stride = ldw * int64_t{sizeof(float)};
        next.bytes = steps * int64_t{sizeof(float)};
        next.rows = std::min<int64_t>(Rows, rows - n - Rows);
      }
      Micro<Lanes, Rows, true>(at, steps, wn, ldw, cn, next, add);
    } else {
      NoPrefetch none;
      Micro<Lanes, Rows, true>(at, steps, wn, ldw, cn, none, add);
    }
  }
  if constexpr (Rows > 1) {
    if (n < rows)
      ChunkRows<Lanes, Rows / 2>(at, steps, w + n * ldw, ldw, rows - n, c + n * kTileRows, add,
                                 first_tile);
  }
}

// ChunkRows with the micro-tile's rows of W for tiles `width` floats wide.
ICL_TARGET inline void ChunkTile(int64_t width, const float* at, int64_t steps, const float* w,
                                 int64_t ldw, int64_t rows, float* c, bool add, bool first) {
  constexpr int kLast = Simd::kTileLanes - 1;
  switch (width / Simd::kWidth) {
    case 4:
      if constexpr (Simd::kTileLanes >= 4)
        return ChunkRows<4, Simd::kWRows[kLast]>(at, steps, w, ldw, rows, c, add, first);
      return;
    case 3: return ChunkRows<3, Simd::kWRows[2]>(at, steps, w, ldw, rows, c, add, first);
    case 2: return ChunkRows<2, Simd::kWRows[1]>(at, steps, w, ldw, rows, c, add, first);
    default: return ChunkRows<1, Simd::kWRows[0]>(at, steps, w, ldw, rows, c, add, first);
  }
}

// Steps of K per chunk (TryChunks): a tile's chunk of A fills two thirds of L1, in whole
// cache lines of W's rows (16 floats), 64 to 512. AVX-512 (tiles of 64 rows) on a 48 KB L1:
// 128 steps (32 KB); AVX2 (24 rows): 336.
inline int64_t ChunkSteps(int64_t tile_rows) {
  const int64_t steps = L1DataBytes() * 2 / 3 / (tile_rows * int64_t{sizeof(float)});
  return std::clamp<int64_t>(steps / 16 * 16, 64, 512);
}

// Where A has many rows (Simd::kChunkFromRows; float32 W): K in chunks (ChunkSteps), and for
// each chunk every tile of A in turn against all the rows of W, as in a GEBP: the tile's chunk
// of A stays in L1 while the rows' chunk of W (all the task's rows: at most 512 rows of 128
// or 336 steps, 256-690 KB) stays in L2 for the tiles after the first (the first streams it
// in: RowsPrefetcher); each tile's sums against every row wait in a per-thread buffer between
// chunks (M x 512 rows x 4 bytes: 512 KB at M=256), and after the last chunk go to Y in blocks
// transposed in registers (StoreChunkTile). Run, before, holds a micro-tile's rows of W (all
// of K) in L1 and streams the whole tile of A from L2 for each of them, and stores each
// micro-tile's result element by element (StoreTile: 7% of the time at M=256, K=N=768,
// AVX-512; the chunks' loads of the sums cost 2%). In ORT, transposed view, Intel Xeon, two
// runs of each build alternated (the grid of bench_matmul, 2 placements), median ICL/ORT
// whole -> in chunks: AVX-512 one thread K=3072 N=768 M=128 1.26-1.28 -> 0.96-1.05, M=256
// 1.36-1.41 -> 1.07-1.13, K=N=768 M=128 1.21 -> 1.07-1.13, M=256 1.22-1.24 -> 1.10-1.15, two
// threads 0.81-0.99 of before; K=768, N=3072 and 32000 0.95-1.03 of before, as the unchanged
// plain view's cells (0.94-1.06).
// AVX2: M=256 0.92-0.97 of before, K=3072 N=768 M=128 0.91-0.97, the rest 0.97-1.02.
// False where it does not apply.
template <class S = Simd>
ICL_TARGET bool TryChunks(const PackedA& a, const void* w, ElemType w_type, int64_t ldw,
                          int64_t rows, float alpha, float* y, int64_t ldy) {
  if constexpr (S::kChunkFromRows > 0) {
    const int64_t kc = ChunkSteps(a.tile_rows);
    // Also, where the traits say so, a tile of one vector against rows of W that alias in L1,
    // which Run would copy block by block.
    const bool aliased_narrow = S::kChunkAliasedNarrow && TileWidth(a, 0) == S::kWidth &&
                                RowsAlias<S::kWRows[0]>(ldw * int64_t{sizeof(float)});
    if (w_type != ElemType::kFloat || (a.m < S::kChunkFromRows && !aliased_narrow) || a.k < kc)
      return false;
    const int64_t tiles = PackedATiles(a);
    float* c = ThreadScratch(ScratchSlot::kChunkSums,
                             static_cast<size_t>(tiles * rows * kTileRows));
    const float* wf = static_cast<const float*>(w);
    for (int64_t k0 = 0; k0 < a.k; k0 += kc) {
      const int64_t steps = std::min(kc, a.k - k0);
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t m0 = t * a.tile_rows;
        const int64_t width = TileWidth(a, m0);
        float* ct = c + t * rows * kTileRows;
        ChunkTile(width, a.data + m0 * a.k + k0 * width, steps, wf + k0, ldw, rows, ct, k0 > 0,
                  t == 0);
        if (k0 + steps == a.k)
          StoreChunkTile(ct, rows, std::min(a.tile_rows, a.m - m0), alpha, y + m0 * ldy, ldy);
      }
    }
    return true;
  }
  return false;
}

// RunSplit where it applies (an ISA with Simd::kSplitRows > 0); false where it does not.
template <int SplitRows = Simd::kSplitRows>
ICL_TARGET bool TryRunSplit(const PackedA& a, const void* w, ElemType w_type, int64_t ldw,
                            int64_t rows, float alpha, float* y, int64_t ldy) {
  if constexpr (SplitRows > 0) {
    if (w_type == ElemType::kFloat && TileWidth(a, 0) / Simd::kWidth == 2 &&
        a.m <= a.tile_rows && RowsAlias<Simd::kWRows[1]>(ldw * 4)) {
      RunSplit<2, SplitRows, Simd::kSplitRuns>(a, static_cast<const float*>(w), ldw, rows,
                                               alpha, y, ldy);
      return true;
    }
  }
  return false;
}

// Run with the micro-tile's rows of W for tiles `width` floats wide (the widest of `a`).
inline void RunTiles(const PackedA& a, const void* w, ElemType w_type, int64_t ldw,
                     int64_t rows, float alpha, float* y, int64_t ldy, int64_t width) {
  switch (width / Simd::kWidth) {
    case 1: return Run<Simd::kWRows[0]>(a, w, w_type, ldw, rows, alpha, y, ldy);
    case 2: return Run<Simd::kWRows[1]>(a, w, w_type, ldw, rows, alpha, y, ldy);
    case 3: return Run<Simd::kWRows[2]>(a, w, w_type, ldw, rows, alpha, y, ldy);
    default: return Run<Simd::kWRows[Simd::kTileLanes - 1]>(a, w, w_type, ldw, rows, alpha, y,
                                                             ldy);
  }
}

// Where packed A is larger than Simd::kGroupFromBytes (and W float32), A's tiles are cut
// into groups of at most about Simd::kGroupBytes, and W's rows into blocks of
// Simd::kGroupWRows rows: each block of W runs against every group in turn, so that
// the group (A streamed from L2 on every W row block) and the block of W both stay in L2
// while the next block of W streams in, and W is still read from memory once. (AVX2 Micro
// 3 x 4 alone, one core, K=768, 4 rows of W in L1, nothing else in L2, GFLOP/s with 1/4/10/20
// tiles of A of 72 KB: 115-116/112-115/112-114/109-113 of a peak of 118: the footprint of A
// costs little by itself. In the whole GEMM, M=256, K=768, N=3072, one core: 98.7-101.4
// GFLOP/s at once, 102.8-104.2 in groups. Groups without blocks of W read W from memory once
// per group: N=32000 4-9% slower.) Where W's rows alias (RowsAlias), Run copies each block's
// rows once per group, from L2: AVX-512, K=3072, N=768, M=256, in ORT, one thread, median of
// 12 alternated runs, groups / rows that alias kept at once (as before) 0.59; with AVX2,
// whose 4-row micro-tiles never alias, 0.96-0.99 (within the noise). False where it does not
// apply.
template <class S = Simd>
ICL_TARGET bool TryGroups(const PackedA& a, const void* w, ElemType w_type, int64_t ldw,
                          int64_t rows, float alpha, float* y, int64_t ldy) {
  if constexpr (S::kGroupBytes > 0) {
    const int64_t tiles = (a.m + a.tile_rows - 1) / a.tile_rows;
    const int64_t bytes = tiles * a.tile_rows * a.k * int64_t{sizeof(float)};
    if (bytes <= S::kGroupFromBytes || w_type != ElemType::kFloat) {
      return false;
    }
    const int64_t groups = (bytes + S::kGroupBytes - 1) / S::kGroupBytes;
    const int64_t per = (tiles + groups - 1) / groups;  // tiles per group
    const float* wf = static_cast<const float*>(w);
    for (int64_t n0 = 0; n0 < rows; n0 += S::kGroupWRows) {
      const int64_t nb = std::min<int64_t>(S::kGroupWRows, rows - n0);
      for (int64_t t0 = 0; t0 < tiles; t0 += per) {
        PackedA g = a;
        g.data = a.data + t0 * a.tile_rows * a.k;
        g.m = std::min(a.m - t0 * a.tile_rows, per * a.tile_rows);
        // The rows of W per micro-tile of A's widest tile, also for a group of its last tile
        // alone (one vector wide: MicroSplit, where the traits' kNarrowSplit; with the rows of
        // a tile of its own width, 12, they alias in L1 at K=3072 and Run copies them).
        RunTiles(g, wf + n0 * ldw, w_type, ldw, nb, alpha, y + t0 * a.tile_rows * ldy + n0, ldy,
                 TileWidth(a, 0));
      }
    }
    return true;
  }
  return false;
}

inline void Dispatch(const PackedA& a, const void* w, ElemType w_type, int64_t ldw,
                     int64_t rows, float alpha, float* y, int64_t ldy) {
  static_assert(Simd::kTileLanes >= 3 && Simd::kTileLanes <= 4, "tiles of 3 or 4 vectors");
  if (TryRunSplit(a, w, w_type, ldw, rows, alpha, y, ldy)) return;
  if (TryChunks(a, w, w_type, ldw, rows, alpha, y, ldy)) return;
  if (TryGroups(a, w, w_type, ldw, rows, alpha, y, ldy)) return;
  RunTiles(a, w, w_type, ldw, rows, alpha, y, ldy, TileWidth(a, 0));
}

}  // namespace icl::cpu::ICL_ISA_NS
