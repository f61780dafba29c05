// What the CUDA part was compiled for, so tests can check the build without a GPU.
#pragma once

#include <cuda_runtime.h>

#include "cuda/boundary.cuh"

namespace icl::cuda {

// The virtual architectures nvcc compiled the kernels for, e.g. "800,900" (__CUDA_ARCH_LIST__).
const char* CompiledArchList();

// The CUDA toolkit version the kernels were compiled with, e.g. 13000.
int CompiledCudaVersion();

// The binary (SASS) and PTX versions of the kernel image the driver picked for the current
// device, e.g. 90 and 90 on an H200. Needs a GPU.
cudaError_t LoadedKernelVersions(int* binary_version, int* ptx_version);

}  // namespace icl::cuda
