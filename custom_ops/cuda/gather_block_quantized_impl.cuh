// Launcher of the IclGatherBlockQuantized kernel: rows of a MatMulNBits table, dequantized
// (common/block_quant.h holds the layout and the arithmetic the CPU kernel uses too).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/block_quant.h"
#include "common/elem_type.h"
#include "cuda/boundary.cuh"

namespace icl::cuda {

// Y[t, k] = float(q(rows[t], k) - zero_point(rows[t], k / block_size)) * scale(...), rounded to
// `type`, for t < count and k < K. Every pointer is device memory; `rows` are already checked
// and in [0, N) (the host checks the indices, see gather_block_quantized.h).
struct BlockGatherProblem {
  BlockQuantGeometry geometry;
  const uint8_t* b = nullptr;            // [N, row_bytes]
  const void* scales = nullptr;          // [N, n_blocks] of `type`
  const uint8_t* zero_points = nullptr;  // [N, zero_point_row_bytes], or nullptr
  ElemType type = ElemType::kFloat;      // scales and Y
  const int64_t* rows = nullptr;         // [count]
  int64_t count = 0;
  void* y = nullptr;  // [count, K] of `type`
};

// Asynchronous on `stream`.
cudaError_t LaunchGatherBlockQuantized(const BlockGatherProblem& p, cudaStream_t stream);

}  // namespace icl::cuda
