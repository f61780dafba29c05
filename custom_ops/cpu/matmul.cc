// Strategy: the N columns of Y are split into chunks that ORT's threads take in turn; each
// chunk reads a disjoint, contiguous part of W exactly once. The kernels are the library's own
// (no BLAS), each with AVX-512, AVX2 and portable variants picked at run time:
//  - Transposed view, few rows of A: W's rows are the columns of view(W), so each output is a
//    dot product of two contiguous rows. RowDot streams W once, converting 16-bit W in
//    registers: this is a memory-bound GEMV and runs at memory bandwidth.
//  - Transposed view, more rows of A (AVX-512 or AVX2): WideGemm, which packs A once per call
//    and broadcasts W from its rows (no horizontal sums, and no packing of W: ORT prepacks
//    the B of its own MatMul ahead of time, which a custom op cannot). The portable build
//    uses RowDot for every M.
//  - Plain view: PanelGemm, which multiplies W's column panels in place (where more row tiles
//    follow, its first row tile copies each slice of the panel for them: CopyingPanel, when
//    per ISA in the traits; with AVX2 from three row tiles, the tiles of each slice copy the
//    next one between them as they compute: SpreadPanels), or for one to four rows of A
//    streams W's rows past Y's rows in axpy form (PanelGemmAxpy); with one or two rows of A
//    and a narrow W (with AVX2 and AVX-512 up to 64 rows and a narrow float32 W, beyond four
//    only from 1024 rows of W, or one or two rows and a wide float32 W that streams from
//    memory), the threads split K instead of N (SplitK).
//  - One row of A and a small 16-bit W (either view): one task (OneTask), no second thread.
// The epilogue (the low-rank term (A @ L) @ R with A @ L computed once per call, bias,
// conversion of Y to 16 bits) runs on the chunk while it is in cache. With variant_ids the base
// product is still one pass over W for the whole batch; the low-rank term is one group of rows
// per variant (gathered rows of A @ that variant's L once per call, then per chunk that
// group's product with its R added into its rows), so each variant's factors are read once.
#include "cpu/matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/convert.h"
#include "cpu/panel_gemm.h"
#include "cpu/parallel.h"
#include "cpu/prefetch.h"
#include "cpu/row_dot.h"
#include "cpu/scratch.h"
#include "cpu/wide_gemm.h"

namespace icl::cpu {
namespace {

// Bytes of W the product reads (K x N elements), and bytes its K rows span in the plain view
// (rows ld apart: a column slice spans more than it reads).
int64_t WReadBytes(const MatMulProblem& p) { return p.k * p.view.cols * SizeOf(p.w_type); }
int64_t WSpanBytes(const MatMulProblem& p) { return p.k * p.view.ld * SizeOf(p.w_type); }

// Up to this many rows of A, RowDot beats the GEMM that follows it (one core, K=768,
// N=30000, GFLOP/s RowDot vs WideGemm: 8 rows 56 vs 42, 12 rows 61 vs 60, 16 rows 69 vs 80,
// 32 rows 79 vs 95). With AVX2 only, the same boundary (benchmarks/bench_matmul.py with
// ICL_CPU_ISA=avx2, one thread, loaded machine, WideGemm's time / RowDot's, alternated:
// K=768, N=3072: 16 rows 0.58, 12 rows 1.06, 8 rows 1.13; K=3072, N=768: 12 rows 1.21, 8
// rows 1.34; K=768, N=32000, 16 rows 0.66); the portable build has no WideGemm. Where W
// streams from memory, AVX-512 keeps RowDot further (WideGemmFromRows, wide_gemm.cc).
int64_t RowDotMaxRows(const MatMulProblem& p) {
  if (!WideGemmAvailable()) return INT64_MAX;
  return WideGemmFromRows(p.w_type == ElemType::kFloat ? WReadBytes(p) : 0) - 1;
}
// Columns of Y per task: RowDot tasks stream 192 rows of W (576 KB at K=768), a whole number
// of every RowDot tile's rows of W (8, 6, 4), so that no task ends in single rows, and N=768
// splits into four tasks for two threads (RowDot alone, K=768, one core, time with tasks of
// 192 / of 128: N=768, 4 rows 0.99, N=32000, one row 0.94; in ORT, two threads, K=N=768, 8
// processes each alternating run by run, 8 tasks of 96 / 4 of 192: AVX-512 M=2, 4, 8 0.99,
// 1.00, 0.97, AVX2 1.00, 1.04, 1.01, within the spread); GEMM tasks are larger so that the
// per-task set-up (packing, transposing W) is amortised.
constexpr int64_t kRowDotChunk = 192;
constexpr int64_t kGemmChunk = 512;
// The plain view with more rows of A than one PanelGemm tile, and WideGemm: a narrow W is
// split into at least four tasks of whole 64-column panels so that two threads balance
// (N=768: 4 of 192 columns, not 512 + 256: 1.44 against 1.56 ms at M=128, K=768), a wide one
// into tasks of 512 columns (smaller tasks lose PanelGemm's prefetch of the next panel: M=16,
// K=768, N=30000, 10.7 ms in tasks of 128 columns against 8.6 in tasks of 512). With one
// PanelGemm tile tasks of 512 columns measured no slower (M=3..6, K=3072, N=768, loaded
// machine: tasks of 192 columns took 1.0 to 1.24 times as long as 512 + 256).
constexpr int64_t kPanelGemmTileRows = 6;  // Simd::kRows of every PanelGemm build
int64_t GemmChunk(int64_t n) {
  const int64_t quarter = (n + 3) / 4;
  return std::clamp<int64_t>((quarter + 63) / 64 * 64, 64, kGemmChunk);
}
// PanelGemm's tasks are whole panels of PanelGemmColumns(m) columns, at most kGemmChunk
// columns, at least four tasks and an even number of them (two threads balance): where the
// panels are 48 columns wide (AVX-512, M a multiple of 8), tasks of 512 columns ended in a
// 32-column panel of 8 x 1 tiles (K=768, N=3072, one thread, in ORT, fastest time: 384 or 576
// columns against 512, M=32 0.98-0.99, M=128 0.99-1.00; by itself, one core, M=128: 0.96), and
// N=3072 takes 8 tasks of 384 (7 of up to 480 would leave one thread a task more).
int64_t PanelGemmChunk(int64_t n, int64_t m) {
  const int64_t cols = PanelGemmColumns(m);
  const int64_t panels = (n + cols - 1) / cols;
  const int64_t most = std::max<int64_t>(1, kGemmChunk / cols);  // panels per task
  int64_t tasks = std::max<int64_t>(4, (panels + most - 1) / most);
  tasks += tasks % 2;
  return std::max<int64_t>(1, (panels + tasks - 1) / tasks) * cols;
}
// The plain view where PanelGemm computes in axpy form (PanelGemmAxpy): a task's rows of Y
// (16 KB) stay in L1 while W's rows stream past them, so a task is as wide as that allows
// (long runs of each row of W), and at least four tasks for two threads to balance.
int64_t AxpyWidest(int64_t m) { return 4096 / m / 64 * 64; }
int64_t AxpyChunk(int64_t m, int64_t n) {
  const int64_t quarter = (n + 3) / 4;
  return std::clamp<int64_t>((quarter + 63) / 64 * 64, 64, AxpyWidest(m));
}
// Where one task's rows of Y can be all of N (one or two rows of A, N <= AxpyWidest), the
// axpy form splits K instead: each task multiplies a slice of W's rows, whole, into its own
// partial Y, and the partials are summed. A task of whole rows reads its slice of W as one
// stream, where tasks of a quarter of N read 768 bytes of each row of W at N = 768 (RowDot
// and PanelGemm alone, K = N = 768, W in L3, one core: one row of A 37 -> 30 us, two rows
// 42 -> 34 us). Four slices of at least kAxpyMinSliceRows rows (whole steps of AxpyRows),
// for two threads to balance. Only for a W of at most kAxpySplitMaxBytes: in ORT, one
// thread, loaded machine, split / by N: K = N = 768 (2.4 MB) M=1 0.92, M=2 0.81, but
// K=3072, N=768 and K=768, N=3072 (9.4 MB, read from memory there) M=1 1.14 and 1.10;
// except one row of A and a 16-bit W of at most kAxpySplitHalfMaxCols columns and any size,
// whose tasks by N read 384 bytes of each row at K=3072, N=768 (in ORT, float16 W,
// alternated, loaded machine, split / by N, median (p10-p90), lowest times: AVX-512 one
// thread 0.74 (0.55-1.00), 0.81; two threads 0.78 (0.59-0.98), 1.00; AVX2 0.72 and 0.65);
// at K=768, N=3072 (tasks by N read 1.5 KB of each row) the split was no faster: medians
// 0.95-1.06, lowest times 1.05-1.19.
// Per instruction set, also up to PanelGemmKSplitRule's rows of A and a float32 W whose rows
// are at most kSplitKNarrowRowBytes apart, or that streams from memory (AVX2 and AVX-512:
// measured in their traits, panel_gemm_avx2.cc and panel_gemm_avx512.cc). Beyond kAxpyMaxRows
// rows of A the slices are walked in panels, and only where W has kPanelSplitFromK rows or
// more: slices of 768 rows of a narrow W, each 2.4 MB in one piece, where tasks by N read a
// strip of 768 bytes from each of 3072 rows (K=3072, N=768, in ORT, the choice switched run by
// run in one session, each run right after an ORT run, medians of 100 rounds, split / by N:
// AVX-512 one thread M=5 0.76, M=6 0.93, M=8 0.64, M=12 0.60, M=16 0.71, M=24 0.74, M=32
// 0.71, M=48 0.93, M=64 0.92, two threads M=6 0.79, M=8 0.95, M=12 0.65, M=16 0.77, M=32
// 0.91, M=64 0.97; AVX2 one thread M=6 0.90, M=8 0.88, M=16 0.97, M=32 0.91, M=64 0.99, two
// threads 0.92, 0.92, 0.91, 0.82, 0.90; M=128 and 256 0.98-0.99, not split: the partial sums
// grow with M). At K=N=768 the split was no faster (0.85-1.05, AVX-512 and AVX2, M=8-32).
constexpr int64_t kAxpySlices = 4;
constexpr int64_t kAxpyMinSliceRows = 16;
constexpr int64_t kAxpySplitMaxBytes = int64_t{4} << 20;
constexpr int64_t kSplitKNarrowRowBytes = 3072;
constexpr int64_t kPanelSplitFromK = 1024;
constexpr int64_t kAxpySplitHalfMaxCols = 1024;
// One row of A and a 16-bit W of at most kOneTaskMaxBytes: one task, on the calling thread.
// The product is bound by converting W (vcvtph2ps, measured on Zen 4 at half a zmm per
// cycle, as the FMA beside it), some 20 us at K = N = 768, and handing tasks to a second
// thread cost more than it saved (in ORT, two threads, float16 W, K = N = 768, alternated,
// loaded machine, one task / four tasks, medians of two runs: AVX-512 transposed 0.81, plain
// 0.77-0.78; AVX2 0.76-0.83 and 0.77-0.78; one thread, within the noise: AVX-512 0.96-0.99,
// AVX2 0.82-1.09). A 16-bit W of 4.7 MB (K=768, N=3072) still gains from two threads; sizes
// between were not measured.
constexpr int64_t kOneTaskMaxBytes = int64_t{2} << 20;
// One row of A and a 16-bit W, which OneTask and SplitsK treat apart (see above).
bool OneRowHalfW(const MatMulProblem& p) { return p.m == 1 && SizeOf(p.w_type) == 2; }
bool OneTask(const MatMulProblem& p) {
  return OneRowHalfW(p) && WReadBytes(p) <= kOneTaskMaxBytes &&
         (p.view.transposed || p.view.cols <= AxpyWidest(1));  // the axpy form's Y in L1
}
// Where the instruction set splits K for a float32 W, whole (no column slice), that streams
// from memory (StreamsFromMemory) and whose rows are wider than a task along N (AxpyWidest):
// each task then reads its slice of W's rows whole (KSplitRule::stream_max_rows).
bool AxpyStreamsK(const MatMulProblem& p) {
  return !p.view.transposed && p.w_type == ElemType::kFloat &&
         p.m <= PanelGemmKSplitRule().stream_max_rows && p.view.cols == p.view.ld &&
         p.view.cols > AxpyWidest(p.m) && p.k >= kAxpySlices * kAxpyMinSliceRows &&
         StreamsFromMemory(WSpanBytes(p));
}
bool SplitsK(const MatMulProblem& p) {
  if (AxpyStreamsK(p)) return true;
  if (p.view.transposed || p.k < kAxpySlices * kAxpyMinSliceRows) return false;
  // A narrow W's rows (at most 768 columns) fit AxpyWidest for up to kAxpyMaxRows rows of A.
  const int64_t narrow_max_rows = PanelGemmKSplitRule().narrow_max_rows;
  if (narrow_max_rows > 0 && p.w_type == ElemType::kFloat &&
      p.view.ld * SizeOf(p.w_type) <= kSplitKNarrowRowBytes) {
    return p.m <= narrow_max_rows && (p.m <= kAxpyMaxRows || p.k >= kPanelSplitFromK);
  }
  if (p.view.cols > AxpyWidest(p.m)) return false;
  return !OneTask(p) && p.m <= 2 &&
         ((OneRowHalfW(p) && p.view.cols <= kAxpySplitHalfMaxCols) ||
          WSpanBytes(p) <= kAxpySplitMaxBytes);
}
// Rows of A per task of A @ L, the low-rank term's first product.
constexpr int64_t kLowRankRows = 32;

const char* ElementAddress(const void* base, ElemType t, int64_t index) {
  return static_cast<const char*>(base) + index * SizeOf(t);
}

// WideGemm's A is packed by the GEMM's own tasks, not in a pass of its own before them: with
// intra-op spinning off each pass over the thread pool wakes the worker again, and it starts
// 35-60 us late (a second pass paid that twice). Each task first packs the tiles that no
// thread has claimed, then waits for those another thread is still packing, so that the
// calling thread packs while the worker wakes up and the worker, once there, packs with it.
// The wait spins (a tile is being packed by a running thread): yielding there let a loaded
// machine park the waiting thread, which holds a task the others then wait for (in ORT, two
// threads, K=N=768, 8 processes, each alternating run by run, time / 9227f26's, median of the
// processes' medians (range): AVX-512 M=256 yielding 1.04 (1.00-1.83), spinning 1.00
// (0.88-1.03); AVX2 M=32 0.93 and 0.96, M=64 0.98 and 0.97).
constexpr int kTileFree = 0, kTilePacking = 1, kTilePacked = 2;
void PackAOnce(const float* a, int64_t lda, const PackedA& packed, std::atomic<int>* state) {
  const int64_t tiles = PackedATiles(packed);
  for (int64_t t = 0; t < tiles; ++t) {
    int expected = kTileFree;
    if (state[t].load(std::memory_order_acquire) == kTileFree &&
        state[t].compare_exchange_strong(expected, kTilePacking, std::memory_order_acquire)) {
      PackATile(a, lda, t, packed);
      state[t].store(kTilePacked, std::memory_order_release);
    }
  }
  for (int64_t t = 0; t < tiles; ++t) {
    while (state[t].load(std::memory_order_acquire) != kTilePacked) _mm_pause();
  }
}

// The RowDot problem's rows of A (all of p's), as RowDotPack and RowDot read them, and W's
// size (the tiles, and with them A's packed layout, may depend on it).
RowDotProblem RowDotRows(const MatMulProblem& p) {
  RowDotProblem rd;
  rd.a = p.a;
  rd.lda = p.k;
  rd.rows = p.m;
  rd.k = p.k;
  rd.w_bytes = WReadBytes(p);
  return rd;
}

// Computes columns [n0, n0 + nc) of scale * A @ view(W) into out (row stride ldo).
// `packed` is A packed for WideGemm when that is the path taken, else null; `row_dot_a` A
// packed for RowDot (RowDotPack) when that is the path and A has more than one row.
void ComputeChunk(const MatMulProblem& p, const PackedA* packed, const float* row_dot_a,
                  int64_t n0, int64_t nc, float* out, int64_t ldo) {
  const ViewGeometry& v = p.view;
  if (v.transposed) {
    // Row n of W (offset + n * ld) is column n of view(W), K contiguous elements.
    const void* w_rows = ElementAddress(p.w, p.w_type, v.offset + n0 * v.ld);
    if (packed == nullptr) {
      RowDotProblem rd = RowDotRows(p);
      rd.w = w_rows;
      rd.ldw = v.ld;
      rd.w_type = p.w_type;
      rd.alpha = p.scale;
      rd.y = out;
      rd.ldy = ldo;
      rd.packed_a = row_dot_a;
      RowDot(rd, 0, nc);
      return;
    }
    WideGemm(*packed, w_rows, p.w_type, v.ld, nc, p.scale, out, ldo);
    return;
  }
  // view(W)[k, n] = W[offset + k * ld + n]: the chunk is a K x nc block of rows of W.
  const void* w_block = ElementAddress(p.w, p.w_type, v.offset + n0);
  PanelGemm(p.a, p.k, p.m, p.k, w_block, p.w_type, v.ld, nc, p.scale, out, ldo);
}

// Adds the bias to columns [n0, n0 + nc) and stores them into Y in its element type.
void Epilogue(const MatMulProblem& p, int64_t n0, int64_t nc, float* out, int64_t ldo) {
  const int64_t n = p.view.cols;
  for (int64_t r = 0; r < p.m; ++r) {
    float* row = out + r * ldo;
    if (p.bias != nullptr) {
      for (int64_t j = 0; j < nc; ++j) row[j] += p.bias[n0 + j];
    }
    if (p.y_type != ElemType::kFloat) {
      char* dst = static_cast<char*>(p.y) + (r * n + n0) * SizeOf(p.y_type);
      FromFloat(row, p.y_type, dst, nc);
    }
  }
}

// T_g = A_g @ L_g for every low-rank group g (A_g: the group's rows of A), into `left` at
// element offset `offsets[g]`, in tasks of up to kLowRankRows rows of one group.
Ort::Status LowRankLeftProducts(OrtKernelContext* context, const MatMulProblem& p,
                                std::vector<float>& left, std::vector<int64_t>& offsets) {
  const int64_t groups = static_cast<int64_t>(p.deltas.size());
  struct Task {
    int64_t group, row0;
  };
  std::vector<Task> tasks;
  offsets.resize(static_cast<size_t>(groups));
  int64_t total = 0;  // <= m * rank, which fits (the front end checks A @ U's size)
  for (int64_t g = 0; g < groups; ++g) {
    const LowRankGroup& group = p.deltas[g];
    offsets[g] = total;
    total += group.rows.size() * group.term.rank;
    for (int64_t r0 = 0; r0 < group.rows.size(); r0 += kLowRankRows) tasks.push_back({g, r0});
  }
  left.resize(static_cast<size_t>(total));
  // L per group: U itself, or V transposed (a copy of rank x K per group, made in parallel:
  // a pass over the thread pool costs a wake-up, so only when there is a copy to make).
  std::vector<std::vector<float>> transposed(static_cast<size_t>(groups));
  std::vector<const float*> l(static_cast<size_t>(groups));
  auto left_matrix = [&](int64_t g) { l[g] = LowRankLeftMatrix(p.deltas[g].term, transposed[g]); };
  if (p.deltas[0].term.transposed) {
    if (Ort::Status status = ParallelFor(context, groups, left_matrix); !status.IsOK()) {
      return status;
    }
  } else {
    for (int64_t g = 0; g < groups; ++g) left_matrix(g);
  }
  return ParallelFor(context, static_cast<int64_t>(tasks.size()), [&](int64_t t) {
    const LowRankGroup& group = p.deltas[tasks[t].group];
    const int64_t r0 = tasks[t].row0;
    const int64_t rows = std::min(kLowRankRows, group.rows.size() - r0);
    const float* a = p.a + (group.rows.Row(0) + r0) * p.k;
    if (!group.rows.Contiguous()) {  // gather the rows (a variant's batch rows are scattered)
      float* gathered = ThreadScratch(ScratchSlot::kLowRankRows, static_cast<size_t>(rows * p.k));
      for (int64_t i = 0; i < rows; ++i) {
        const float* row = p.a + group.rows.Row(r0 + i) * p.k;
        std::copy(row, row + p.k, gathered + i * p.k);
      }
      a = gathered;
    }
    LowRankLeft(group.term, l[tasks[t].group], a, rows,
                left.data() + offsets[tasks[t].group] + r0 * group.term.rank);
  });
}

// Adds every low-rank term to columns [n0, n0 + nc) of out (row stride ldo), from the
// groups' A_g @ L_g in `left` (LowRankLeftProducts), then the epilogue.
void FinishColumns(const MatMulProblem& p, const std::vector<float>& left,
                   const std::vector<int64_t>& offsets, int64_t n0, int64_t nc, float* out,
                   int64_t ldo) {
  for (size_t g = 0; g < p.deltas.size(); ++g) {
    LowRankAddColumns(p.deltas[g].term, left.data() + offsets[g], p.deltas[g].rows, n0, nc,
                      out, ldo);
  }
  Epilogue(p, n0, nc, out, ldo);
}

// Y for the plain view and a narrow or streamed W (SplitsK): the K slices of W in parallel, in
// axpy form up to kAxpyMaxRows rows of A, else in panels, each into its own partial Y (the
// first into Y), then their sum, the low-rank term and the epilogue on all of Y.
Ort::Status SplitK(OrtKernelContext* context, const MatMulProblem& p,
                   const std::vector<float>& left, const std::vector<int64_t>& offsets) {
  const int64_t n = p.view.cols;
  const int64_t size = p.m * n;
  const int64_t slice = ((p.k + kAxpySlices - 1) / kAxpySlices + 7) / 8 * 8;
  const int64_t tasks = ChunkCount(p.k, slice);
  float* out = p.y_type == ElemType::kFloat
                   ? static_cast<float*>(p.y)
                   : ThreadScratch(ScratchSlot::kOutput, static_cast<size_t>(size));
  float* partials =
      ThreadScratch(ScratchSlot::kPartialSums, static_cast<size_t>((tasks - 1) * size));
  Ort::Status status = ParallelFor(context, tasks, [&](int64_t t) {
    const int64_t k0 = t * slice;
    const void* w_rows = ElementAddress(p.w, p.w_type, p.view.offset + k0 * p.view.ld);
    float* y = t == 0 ? out : partials + (t - 1) * size;
    PanelGemm(p.a + k0, p.k, p.m, std::min(slice, p.k - k0), w_rows, p.w_type, p.view.ld, n,
              p.scale, y, n, /*axpy=*/p.m <= kAxpyMaxRows);
  });
  if (!status.IsOK()) return status;
  for (int64_t t = 1; t < tasks; ++t) {
    const float* partial = partials + (t - 1) * size;
    for (int64_t i = 0; i < size; ++i) out[i] += partial[i];
  }
  FinishColumns(p, left, offsets, 0, n, out, n);
  return Ort::Status{nullptr};
}

}  // namespace

Ort::Status RunMatMul(OrtKernelContext* context, const MatMulProblem& p) {
  const int64_t n = p.view.cols;
  if (p.m == 0 || n == 0) return Ort::Status{nullptr};
  if (p.k == 0) {
    // An empty sum: every row of Y is the bias (or zero).
    float* out = p.y_type == ElemType::kFloat
                     ? static_cast<float*>(p.y)
                     : ThreadScratch(ScratchSlot::kOutput, static_cast<size_t>(p.m * n));
    std::fill(out, out + p.m * n, 0.0f);
    Epilogue(p, 0, n, out, n);
    return Ort::Status{nullptr};
  }
  const bool row_dot = p.view.transposed && p.m <= RowDotMaxRows(p);
  std::vector<float> left;  // A_g @ L_g of every low-rank group, at offsets[g]
  std::vector<int64_t> offsets;
  if (!p.deltas.empty()) {
    if (Ort::Status status = LowRankLeftProducts(context, p, left, offsets); !status.IsOK()) {
      return status;
    }
  }
  if (SplitsK(p)) return SplitK(context, p, left, offsets);
  float* row_dot_a = nullptr;  // A packed once for every RowDot task
  if (row_dot && p.m > 1) {
    row_dot_a = ThreadScratch(ScratchSlot::kRowDotA,
                              static_cast<size_t>(RowDotPackedSize(p.m, p.k)));
    RowDotPack(RowDotRows(p), row_dot_a);
  }
  PackedA packed;
  const bool wide = p.view.transposed && !row_dot && WideGemmAvailable();
  std::unique_ptr<std::atomic<int>[]> tile_state;  // A's tiles, packed in the GEMM's tasks
  if (wide) {
    packed.m = p.m;
    packed.k = p.k;
    const int64_t w_row_bytes = p.w_type == ElemType::kFloat ? p.view.ld * 4 : 0;
    packed.tile_rows = PackedATileRows(p.m, p.k, w_row_bytes);
    packed.data = ThreadScratch(ScratchSlot::kPackedA, static_cast<size_t>(PackedASize(p.m, p.k)));
    tile_state.reset(new std::atomic<int>[static_cast<size_t>(PackedATiles(packed))]);
    for (int64_t t = 0; t < PackedATiles(packed); ++t) tile_state[t].store(kTileFree);
  }
  int64_t chunk = kGemmChunk;
  if (row_dot) {
    chunk = kRowDotChunk;
  } else if (!p.view.transposed && PanelGemmAxpy(p.m, p.k, p.view.ld * SizeOf(p.w_type))) {
    chunk = AxpyChunk(p.m, n);
  } else if (wide) {
    chunk = GemmChunk(n);
  } else if (p.m > kPanelGemmTileRows) {
    chunk = PanelGemmChunk(n, p.m);
  }
  if (OneTask(p)) chunk = n;
  const int64_t tasks = ChunkCount(n, chunk);
  return ParallelFor(context, tasks, [&](int64_t t) {
    const int64_t n0 = t * chunk;
    const int64_t nc = std::min(chunk, n - n0);
    float* out;
    int64_t ldo;
    if (p.y_type == ElemType::kFloat) {
      out = static_cast<float*>(p.y) + n0;
      ldo = n;
    } else {
      out = ThreadScratch(ScratchSlot::kOutput, static_cast<size_t>(p.m * nc));
      ldo = nc;
    }
    if (wide) PackAOnce(p.a, p.k, packed, tile_state.get());
    ComputeChunk(p, wide ? &packed : nullptr, row_dot_a, n0, nc, out, ldo);
    FinishColumns(p, left, offsets, n0, nc, out, ldo);
  });
}

}  // namespace icl::cpu
