// Shared declarations of the op library: the domain and each backend's registration hook.
#pragma once

#include "onnxruntime_cxx_api.h"

namespace icl {

inline constexpr const char* kDomain = "ai.icl";

namespace cpu {
// Adds the CPUExecutionProvider kernels of IclMatMul, IclGather and IclGatherBlockQuantized to
// `domain`.
void RegisterOps(Ort::CustomOpDomain& domain);
}  // namespace cpu

namespace cuda {
// Adds the CUDAExecutionProvider kernels; does nothing in a build without CUDA.
void RegisterOps(Ort::CustomOpDomain& domain);
}  // namespace cuda

}  // namespace icl
