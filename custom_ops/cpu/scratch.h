// Per-thread scratch buffers that persist across calls, so hot loops neither allocate nor
// page-fault fresh memory each run.
#pragma once

#include <cstddef>
#include <vector>

namespace icl::cpu {

// Independent buffers a task may hold at once.
enum class ScratchSlot {
  kWeights = 0,
  kOutput = 1,
  kRow = 2,
  kLowRankRight = 3,
  kLowRankOut = 4,
  kPanel = 5,
  kPackedA = 6,  // the calling thread's A packed for WideGemm, read by every task of the call
  kLowRankRows = 7,
  kRowDotA = 8,      // A laid out for RowDot (RowDotPack), shared by the call's tasks
  kPartialSums = 9,  // the calling thread's partial Y of each K slice but the first
  kStagedY = 10,     // WideGemm's columns of Y, copied into Y a few whole lines at a time
  kChunkSums = 11,   // WideGemm's sums of each tile of A and row of W between chunks of K
  kCount = 12,  // how many slots there are
};

// Returns at least `n` floats owned by the calling thread, valid until its next call with the
// same slot. May throw std::bad_alloc.
inline float* ThreadScratch(ScratchSlot slot, size_t n) {
  thread_local std::vector<float> buffers[static_cast<int>(ScratchSlot::kCount)];
  std::vector<float>& b = buffers[static_cast<int>(slot)];
  if (b.size() < n) b.resize(n);
  return b.data();
}

}  // namespace icl::cpu
