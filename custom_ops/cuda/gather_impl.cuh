// Launcher of the IclGather kernel: rows of view(W) selected by an index tensor.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/elem_type.h"
#include "cuda/boundary.cuh"

namespace icl::cuda {

// Y[t, c] = scale * view(W)[indices[t], c] + delta[indices[t], c] with view(W)[r, c] =
// W_flat[w_offset + (w_transposed ? c * w_ld + r : r * w_ld + c)], r < rows, c < cols.
struct GatherProblem {
  const void* w = nullptr;
  ElemType w_type = ElemType::kFloat;
  int64_t w_offset = 0;
  int64_t w_ld = 0;
  bool w_transposed = false;
  float scale = 1.0f;
  int64_t rows = 0;  // V: rows of view(W); indices count from the end when negative
  int64_t cols = 0;  // H
  const void* indices = nullptr;
  IndexType index_type = IndexType::kInt64;
  int64_t count = 0;  // number of indices
  void* y = nullptr;  // [count, cols] of y_type
  ElemType y_type = ElemType::kFloat;
  // The low-rank term (common/low_rank.h): U, V of W's type (rank 0: none).
  const void* u = nullptr;
  const void* v = nullptr;
  int64_t rank = 0;
  bool delta_transposed = false;
};

// Asynchronous on `stream`. An index outside [-rows, rows) yields a zero row: reporting it would
// need a device synchronisation (ORT's own CUDA Gather behaves the same way).
cudaError_t LaunchGather(const GatherProblem& p, cudaStream_t stream);

}  // namespace icl::cuda
