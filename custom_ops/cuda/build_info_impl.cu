// Build facts of the CUDA part (see build_info_impl.cuh).
#include "cuda/build_info_impl.cuh"

namespace icl::cuda {
namespace {

#define ICL_STRINGIFY_(...) #__VA_ARGS__
#define ICL_STRINGIFY(...) ICL_STRINGIFY_(__VA_ARGS__)

// A kernel that is never launched: its attributes tell which image of this library was loaded.
__global__ void ProbeKernel() {}

}  // namespace

const char* CompiledArchList() {
#ifdef __CUDA_ARCH_LIST__
  return ICL_STRINGIFY(__CUDA_ARCH_LIST__);
#else
  return "";
#endif
}

int CompiledCudaVersion() { return CUDART_VERSION; }

cudaError_t LoadedKernelVersions(int* binary_version, int* ptx_version) {
  cudaFuncAttributes attrs{};
  cudaError_t e = cudaFuncGetAttributes(&attrs, ProbeKernel);
  if (e != cudaSuccess) return e;
  *binary_version = attrs.binaryVersion;
  *ptx_version = attrs.ptxVersion;
  return cudaSuccess;
}

}  // namespace icl::cuda
