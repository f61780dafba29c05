// Strided 2-D element conversion: the building block of the mixed-dtype GEMM paths and the bias
// broadcast.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/elem_type.h"
#include "cuda/boundary.cuh"

namespace icl::cuda {

// dst[r * dst_ld + c] = src[r * src_ld + c] converted to dst_type, for r < rows and c < cols.
// src_ld = 0 repeats one source row on every destination row (a bias broadcast).
// Asynchronous on `stream`; returns the launch error.
cudaError_t LaunchConvert2D(const void* src, ElemType src_type, int64_t src_ld, void* dst,
                            ElemType dst_type, int64_t dst_ld, int64_t rows, int64_t cols,
                            cudaStream_t stream);

}  // namespace icl::cuda
