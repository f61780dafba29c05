// PanelGemm for AVX2 + FMA + F16C: 8 floats a vector; 6 rows of A x 2 vectors = 12
// accumulators of 16 ymm (a few rows of A: axpy form).
#include <immintrin.h>

#include "cpu/panel_gemm.h"

#define ICL_TARGET __attribute__((target("avx2,fma,f16c")))
#define ICL_ISA_NS avx2

namespace icl::cpu::avx2 {

struct Simd {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kRows = 6;
  static constexpr int kLanes = 2;
  // No alternative tile: 4 x 3 (12 accumulators, 3 vectors of W, 1 broadcast: all 16 ymm)
  // measured faster standalone (M=8, K=768, N=768: 0.153 against 0.189 ms) but 1.05-1.20 times
  // slower inside ORT at M=16-256 (plain view, K=768, N=768 and 3072).
  static constexpr int kAltRows = 0;
  static constexpr int kAltLanes = 0;
  // The first row tile's copy of a panel (CopyingPanel in panel_gemm_impl.h), as measured here
  // (one core, W warm, ms in place -> copied, 768-row slices: 768x3072 M=8 0.686 -> 0.560,
  // M=32 2.49 -> 1.66, M=128 14.3 -> 9.0; 3072x768 M=8 0.688 -> 0.548, M=64 4.10 -> 3.29);
  // slices of 256 rows (which fit L1) were 1.05-1.06x slower at M=128-256.
  static constexpr int64_t kCopiedRows = 768;
  // Profile of the copying walk for many rows of A on a wide W (rdtsc around the tiles, one
  // core, K=768, N=32000, M=64, W 64-byte aligned as ORT's initializers): the copying tile, 6
  // of 64 rows (9% of the FMAs), reading one line from each of 768 rows 128 KB apart, took
  // 24-29% of the time; the tiles reading the copy ran at 92-105 GFLOP/s. With W in huge
  // pages (madvise) 19-21%: the TLB is part of that stall. Measured slower or no faster:
  // the copying tile prefetching the panel two to the right instead of the next (42 -> 46
  // ms; a harness with W 16 bytes off the line measured 49 -> 35 ms, a false gain); the next
  // panel's prefetch spread over all row tiles, not issued by the copying tile on the pages
  // it reads (copying tile 25-28% -> 35-43%, 81 -> 60 GFLOP/s); a pass of its own copying 4
  // panels at once, 4 lines per row per visit, the next 4 prefetched on the same pages (M=64
  // 33.2-34.2 -> 36.3-39.6 ms; K=768, N=3072, M=128 5.61-5.76 -> 6.12-6.32); an L1 prefetch
  // 4-32 rows ahead in the copying tile (within the noise).
  // Copy beyond one tile, for 16-bit W and for float32 W of any width from kPackFromRows rows
  // (3072x768 in ORT, one thread, copied / in place M=8 0.94, M=16 0.78) ...
  static constexpr int kCopyAfterTiles = 1;
  static constexpr int kCopyNarrowAfterTiles = 1;
  // ... and for a shorter wide one (768x3072 in ORT, one thread: M=8 0.89, M=32 0.79) ...
  static constexpr int kCopyShortAfterTiles = 1;
  // ... but a short narrow one (rows <= 3 KB apart, stays in L2) beyond four tiles only:
  // K=768, N=768, copied / in place M=12 1.08, M=16 1.10 (in ORT, one thread, medians).
  static constexpr int kCopyShortNarrowAfterTiles = 4;
  // From three row tiles (beyond the blocked walk: M > 16, or M > 32 for rows 16 KB or more
  // apart) the copy of a float32 W is spread over all row tiles, each copying a share of the
  // next panel's rows while it computes on this one's copy (SpreadPanels in
  // panel_gemm_impl.h), so that no tile waits on W as the copying tile above does. The whole
  // grid of bench_matmul (3 placements of W, pooled; ORT's MLAS capped to AVX2), against the
  // first tile's copy in the same rounds, spread / before, median of the runs: one thread
  // K=768, N=3072 M=32 0.90, M=64 0.96, M=128 0.95, M=256 0.99; K=3072, N=768 0.94, 0.99,
  // 0.97, 0.97; K=N=768 0.96, 0.99, 1.01, 1.00; K=768, N=32000 M=64-256 0.98-0.99; two
  // threads 0.92-0.99 over the same cells; the cells it does not reach 0.99-1.04 (median
  // 1.01). (Two sessions of one build read 0.94-0.97 against each other in the plain view
  // with one placement each: single-placement A/B runs of this path need swapped roles or
  // placements.) Measured and not kept: spreading only where Panels copies (a short narrow W
  // read in place up to four tiles, M=24: 1.01-1.04 against spread, and 1.08-1.09 under
  // SplitK's slices of K=3072, N=768), each copy followed by its steps of K in a loop of their
  // own (0.98-1.03; both with 3 placements). From two tiles, or before the blocked walk at
  // M=8-16, it was slower (M=8-16 1.06-2.07), as was the blocked walk with its copy spread so
  // (blocks of 128 rows, M=7-16: 1.07-1.18 at K=768, N=3072 and 32000, 0.97-1.07 at K=3072,
  // N=768).
  static constexpr int kSpreadFromTiles = 3;
  // Spread, the slices are of up to 4096 rows (two copies of a 16-column panel: 512 KB, in
  // L2): slices of 768 rows / whole K=3072 (N=768, 3 placements, roles swapped), one thread
  // M=24-128 0.98-1.02, M=256 1.05; two threads 1.00, 1.00, 1.00, 1.05; slices of 256 rows
  // were slower than of 768 (K=768, M=24-256, 1.05-1.13, one placement).
  static constexpr int64_t kSpreadRows = 4096;
  // The copying tile prefetches into L1 the row 8 ahead when W's rows share pages (part of the
  // copy measured above).
  static constexpr int64_t kL1AheadRows = 8;
  // A last tile of 1-3 rows is merged with the one before (6 x 2 tile: 8 rows 4 + 4; part of
  // the copy measured above; read in place, K = N = 768, one core, W in L3, best of 0.5-1 s:
  // M=7 0.123-0.130 against 0.140-0.144 ms, M=8 0.127-0.133 against 0.157-0.177).
  static constexpr bool kMergeLastTile = true;
  // Three or four rows of A in axpy form from 16 MB of W; below, the panel walk computed
  // faster where W stays in the last-level cache (K=768, N=3072, M=4: 0.21 ms in panels, 0.31
  // in axpy form; both measured with the panel walk over all of K) ...
  static constexpr int64_t kAxpyFromBytes = int64_t{16} << 20;
  // ... and also where W has at most 1024 rows a page or more apart, ...
  static constexpr int64_t kAxpyUpToK = 1024;
  // ... but never where W's rows are 16 KB or more apart (kWideBlockRows). Against the panels
  // walked in blocks of K, PanelGemm alone, one core, loaded machine, axpy / panels, median
  // of 30-80 alternated runs (p10-p90): K=768, N=3072, W from memory (L3 flushed) M=3 0.91
  // (0.66-1.03), M=4 0.94 (0.75-1.07), W in cache M=3 0.63 (0.55-0.72), M=4 0.75
  // (0.62-0.91); K=768, N=32000 float32 M=3 1.17 (1.01-1.35), M=4 1.25 (1.13-1.44), float16
  // M=3 1.09 (1.03-1.24), M=4 1.04 (0.91-1.31). Rows 3 KB apart stay in panels: K=N=768, W
  // from memory M=4 1.16 (0.95-1.33), in ORT 1.12-1.23; K=3072, N=768, W in cache M=4
  // 1.08-1.21.
  static constexpr int64_t kAxpyBelowRowBytes = kWideBlockRowBytes;
  // The threads split K (SplitsK in matmul.cc; tasks of whole rows of W, each one stream)
  // for one to four rows of A and a float32 W of any size whose rows are narrow (at most
  // kSplitKNarrowRowBytes apart, matmul.cc: K=3072, N=768). Tried before (a4b1864) and reverted
  // (805bda6) on bench_matmul's runs of the two builds in separate sessions, new / old medians
  // 0.76-1.19; but two sessions of the same build, each with its own copy of W, differ by up to
  // 10% (W's placement). In the same session, the choice switched run by run (ORT's MLAS capped
  // to AVX2, K=3072, N=768, load 1.3, medians of 100 alternated runs (p10-p90) in two
  // sessions, split / by N): one thread M=1 0.78 (0.65-0.96), 0.79; M=2 0.61 (0.52-0.77), 0.61;
  // two threads M=1 0.84 (0.70-0.96), 0.84; M=2 0.74 (0.60-0.90), 0.74; lowest times
  // 0.71-0.81. Three and four rows of A too (in axpy form, PanelGemm's `axpy`, where by N they
  // walk panels), the same way, load 3-4, medians of 100 runs in two sessions: K=3072, N=768,
  // one thread M=3 0.82, 0.81, M=4 0.90, 0.89; two threads M=3 0.78, 0.79, M=4 0.77, 0.76;
  // K=N=768 one thread M=3 0.84, 0.87, M=4 1.01, 1.02; two threads M=3 0.85, 0.89, M=4 0.96,
  // 1.01.
  // Beyond four rows, up to 64 walked in panels where W has 1024 rows or more (kPanelSplitFromK,
  // matmul.cc, where the measurements are).
  static constexpr int64_t kSplitKNarrowMaxRows = 64;
  // Also one or two rows of A and a float32 W, whole (no column slice), that streams from
  // memory and whose rows are wider than a task along N: each task then reads its slice of W's
  // rows whole, one stream of long runs, as ORT's MLAS reads its prepacked B, where tasks along
  // N read 16 KB of each row, rows 128 KB apart at K=768, N=32000 (y's rows, 128-256 KB, stay
  // in L2; AxpyRows prefetches each row a page ahead). In ORT (MLAS capped to AVX2), K=768,
  // N=32000, split / along N in the same session (the choice switched run by run), loaded
  // machine (load 2.8-3.5), medians of 50 alternated runs in two sessions: one thread M=1 0.94,
  // 0.93, M=2 0.93, 0.93; two threads M=1 0.99, 0.97, M=2 0.99, 0.96. Three and four rows split
  // so (in axpy form, y's rows up to 512 KB) measured slower with one thread, M=3 1.04, 1.07,
  // M=4 0.99, 1.04, faster with two, M=3 0.92, 0.85, M=4 0.93, 0.86: they keep their panels in
  // blocks of K (the thread count is not known there).
  static constexpr int64_t kSplitKStreamMaxRows = 2;
  // The panels walked in blocks of kBlockRows rows of W (kWideBlockRows where W's rows are
  // 16 KB or more apart) up to 16 rows of A, the panel four to the right prefetched
  // (BlockedPanels in panel_gemm_impl.h, where the measurements with blocks of 128 and 64 on
  // an AMD EPYC are). Beyond 16 rows (but for a wide W, below) no faster: PanelGemm
  // alone, one core, loaded machine, blocks / whole K, median of 10-30 alternated ratios
  // (fastest runs, ms): K=768, N=32000, M=32 0.98 (20.9 -> 20.4), M=64 1.01-1.11 (35.6 ->
  // 36.2); K=768, N=3072, M=32 1.06 (1.51 -> 1.62), M=64 1.03 (2.97 -> 3.23); K=3072, N=768,
  // M=32 1.01, M=64 0.98; in ORT (bench_matmul, one thread, against af95f10) K=768, N=32000,
  // M=64 1.08-1.12.
  // Those blocks were 128 rows (64 for wide rows), measured on an AMD EPYC; on an Intel Xeon
  // (2 MB L2), blocks of 32 rows (a task's block of 192 columns in L1: 24 KB), wide rows too:
  // PanelGemm alone, one core, W cold (8 MB touched between runs), fastest of 200, ms, 128 ->
  // 32 rows: K=N=768 M=8 0.236 -> 0.134, M=16 0.306 -> 0.226; K=768, N=3072 M=8 0.868 ->
  // 0.714; K=768, N=32000 (64 -> 32) M=8 11.4 -> 7.7, M=12 12.9 -> 9.2 (16 and 24 rows about
  // as fast, 48-96 slower). In ORT, alternated, 3 placements, median of 15 runs, one and two
  // threads, 32 / 128 rows: K=N=768 M=6 0.57 and 0.84, M=8 0.59 and 0.82, M=16 0.71 and 0.90;
  // K=768, N=3072 M=6-16 0.57-0.81; K=3072, N=768 (SplitK's slices) M=6-16 0.64-0.86; K=768,
  // N=32000 M=6-16 0.33-0.44, M=32 0.63-0.64; M=32 elsewhere (not blocked) 0.97-1.01. Blocks
  // of 32 up to 64 rows of A (128 for wide rows): K=768, N=3072 M=24, 32 0.78-0.89, but
  // K=N=768 and K=3072, N=768 M=32, 64 1.07-1.17, and K=768, N=32000 M=128 1.14. Blocks of
  // 32 up to 256 rows of A (as AVX-512's up to 256 since 9484dde), in ORT, 3 runs of each
  // build alternated, 2 placements: K=768, N=3072 M=32 0.86-0.88, M=64 0.97-1.00, but
  // M=128-256 1.13-1.45, K=N=768 M=32-256 1.09-1.23, K=3072, N=768 M=32-64 1.09-1.18 (M=128-256
  // 0.95-1.02), K=768, N=32000 M=128-256 1.13-1.16 (the kernel harness, one core, W hot, had
  // read K=3072, N=768 M=128-256 1.2-1.45x faster: not what ORT measured).
  static constexpr int64_t kBlockRows = 32;
  static constexpr int kBlockAheadPanels = 4;
  static constexpr int64_t kBlockMaxRows = 16;
  static constexpr int64_t kWideBlockRows = 32;
  // W's rows 16 KB or more apart are walked in blocks up to 32 rows of A, of kBlockRows rows
  // of W beyond 16 rows of A (128 when this was measured, on the EPYC). PanelGemm alone,
  // loaded machine, K=768, N=32000, blocks / whole K,
  // median of 12-20 alternated runs (p10-p90), one core (thread CPU time): blocks of 128 rows
  // M=17 0.90 (0.88-0.93), M=20 0.94 (0.92-0.96), M=24 0.93 (0.88-0.96), M=32 0.99
  // (0.97-1.00) and 0.91 (0.86-0.97), float16 W M=32 0.94 (0.87-1.00); blocks of 64 M=24
  // 0.92, M=32 0.98 and 0.97; blocks of 32 M=32 0.99; two threads (process CPU time, blocks
  // of 128) M=24 1.01, M=32 0.93 and 1.01.
  static constexpr int64_t kWideBlockMaxRows = 32;
  static constexpr int64_t kWideBlockFromRows = 0;  // from the first row of A
  // No other block size for wide rows and few rows of A (AVX-512's kWideFewBlockRows).
  static constexpr int64_t kWideFewBlockRows = kWideBlockRows;
  static constexpr int64_t kWideFewMaxRows = 0;
  // Beyond 16 rows of A (up to 256), where A spans 1 MB or more (M=128 at K=3072: 1.5 MB; with
  // the panel walk over all of K each panel streamed all of A from L3), the panels are walked
  // in blocks of 256 rows of W (128 KB of A at M=128), not spread over all of K: in ORT
  // (ORT's MLAS capped to AVX2), 3 runs of each build alternated, 2 placements, median
  // ICL/ORT, blocks of 256 / before: K=3072, N=768 M=128 0.85 and 0.77 (one and two threads),
  // M=256 0.89 and 0.83 (ICL/ORT 1.28-1.50 -> 1.10-1.19); this rule, again: M=128 0.90 and
  // 0.84, M=256 0.93 and 0.90 (the cells it leaves alone 0.97-1.09). Where A is smaller the
  // blocks were slower: K=N=768 M=128-256 1.02-1.06, K=768, N=3072 M=128-256 1.01-1.07 (A
  // 384-768 KB), at M=32-64 K=N=768 1.09-1.23 and K=3072, N=768 (SplitK's slices) 1.10-1.27,
  // though K=768, N=3072 M=32-64 read 0.93-0.98 (not taken: one shape against two); blocks of
  // 128 rows likewise (K=3072, N=768 M=128-256 0.79-0.94). Wide rows, 16-bit W and beyond 256
  // rows of A: not measured, as before.
  static constexpr int64_t kBigABlockRows = 256;
  static constexpr int64_t kBigAMaxRows = 256;
  static constexpr int64_t kBigAFromBytes = int64_t{1} << 20;
  ICL_TARGET static V Zero() { return _mm256_setzero_ps(); }
  ICL_TARGET static V Broadcast(float v) { return _mm256_set1_ps(v); }
  ICL_TARGET static V Load(const float* p) { return _mm256_loadu_ps(p); }
  ICL_TARGET static V LoadW(const float* p) { return _mm256_loadu_ps(p); }
  ICL_TARGET static V LoadW(const Ort::Float16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  ICL_TARGET static V LoadW(const Ort::BFloat16_t* p) {
    const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));
  }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  ICL_TARGET static V Scale(V v, float s) { return _mm256_mul_ps(v, _mm256_set1_ps(s)); }
  ICL_TARGET static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
};

}  // namespace icl::cpu::avx2

#include "cpu/panel_gemm_impl.h"

namespace icl::cpu {

void PanelGemmAvx2(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
                   ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy,
                   bool axpy) {
  avx2::Dispatch(a, lda, m, k, w, w_type, ldw, n, alpha, y, ldy, axpy);
}

int64_t PanelGemmAvx2Columns(int64_t m) { return avx2::Columns(m); }

bool PanelGemmAvx2Axpy(int64_t m, int64_t k, int64_t row_bytes) {
  return avx2::Axpy(m, k, row_bytes);
}

KSplitRule PanelGemmAvx2KSplitRule() { return avx2::SplitRule(); }

}  // namespace icl::cpu
