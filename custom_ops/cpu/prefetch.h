// Software prefetching of the next block of W while the kernels compute on the current one.
#pragma once

#include <cstdint>

namespace icl::cpu {

// Prefetches the next block of W a few cache lines per step of the work on the current block,
// spread over all of its steps. Without it the core computes on one block and then waits on
// DRAM for the next (the hardware prefetcher does not run far enough ahead), so memory and
// compute add up instead of overlapping. The lines go to L2 (prefetcht1): prefetching into
// L1 holds the L1 miss buffers that the block's own loads need, and measured no better than
// no prefetch at all (Zen 4, RowDot, K=768, N=30000, one core: M=16 from 14 ms to 9.5 ms,
// M=1 from 5.0 ms to 3.7 ms). Plain C++, so every instruction-set variant can include it.
struct Prefetcher {
  const char* next = nullptr;
  const char* end = nullptr;
  int64_t lines_per_step = 0;

  // Spreads [begin, begin + bytes) over `steps` calls of Step().
  Prefetcher(const void* begin, int64_t bytes, int64_t steps)
      : next(static_cast<const char*>(begin)),
        end(static_cast<const char*>(begin) + bytes),
        lines_per_step((bytes / 64 + steps) / (steps > 0 ? steps : 1)) {}

  void Step() {
    for (int64_t q = 0; q < lines_per_step && next < end; ++q, next += 64)
      __builtin_prefetch(next, /*rw=*/0, /*locality=*/2);
  }
};

// Whether a W of w_bytes streams from memory rather than staying in the caches: from half
// the L3 (32 MB on the Zen 4 measured), which the other weights of a model share. RowDot's
// tiles of one tile of rows of A and the AVX2 two-row axpy form then take W's loads into
// their FMAs (row_dot_impl.h, Tile; panel_gemm_impl.h, AxpyRows).
inline bool StreamsFromMemory(int64_t w_bytes) { return w_bytes >= (int64_t{16} << 20); }

}  // namespace icl::cpu
