// Glue between the ORT kernel context and the CUDA launchers: what the backend supports (for the
// shared input front ends), statuses that never throw across the C ABI, and scratch memory from
// ORT's device allocator.
#pragma once

#include <string>

#include "common/input.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cuda {

inline constexpr const char* kProvider = "CUDAExecutionProvider";

// What the CUDA kernels compute, as the shared input front ends (common/input.h) take it: no
// low-rank term on a cast view (cuBLAS takes both operands of one type), and IclGather's
// indices stay on the device (an index outside [-V, V) gives a row of zeros).
inline constexpr Backend kBackend{/*label=*/" (CUDA)", /*low_rank_with_cast_view=*/false,
                                  /*gather_indices_on_host=*/false};

// ORT's CUDA provider resources, as onnxruntime/core/providers/cuda/cuda_resource.h numbers
// them (version 3; the headers the build uses do not ship that file).
inline constexpr int kCudaResourceVersion = 3;
inline constexpr int kCublasHandleResource = 10002;  // CudaResource::cublas_handle_t
inline constexpr int kUseTf32Resource = 10011;       // CudaResource::use_tf32_t

// The CUDA provider's resource `id` for the kernel context's stream, or nullptr where this ORT
// does not have it (an older provider answers nullptr or an error, which is dropped).
inline void* CudaResource(const OrtKernelContext* context, int id) {
  void* resource = nullptr;
  const OrtApi& api = Ort::GetApi();
  if (OrtStatus* status =
          api.KernelContext_GetResource(context, kCudaResourceVersion, id, &resource)) {
    api.ReleaseStatus(status);
    return nullptr;
  }
  return resource;
}

inline Ort::Status Failure(const std::string& op, const std::string& message) {
  return Ort::Status((op + " (CUDA): " + message).c_str(), ORT_FAIL);
}

// Device scratch from the kernel context's allocator for the device of `memory_info`, handed
// back when this goes out of scope. ORT's CUDA allocator is stream-ordered (an arena whose
// freed chunks are reused by later work on the compute stream), as for ORT's own kernels'
// scratch, so freeing right after the asynchronous launch is safe and never synchronises.
class DeviceScratch {
 public:
  DeviceScratch(const Ort::KernelContext& ctx, const OrtMemoryInfo* memory_info, size_t bytes) {
    if (bytes == 0) return;
    const OrtApi& api = Ort::GetApi();
    Ort::ThrowOnError(api.KernelContext_GetAllocator(ctx.GetOrtKernelContext(), memory_info,
                                                     &allocator_));
    Ort::ThrowOnError(api.KernelContext_GetScratchBuffer(ctx.GetOrtKernelContext(), memory_info,
                                                         bytes, &data_));
  }
  ~DeviceScratch() {
    if (allocator_ == nullptr) return;
    if (data_ != nullptr) allocator_->Free(allocator_, data_);
    Ort::GetApi().ReleaseAllocator(allocator_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  void* get() const { return data_; }

 private:
  OrtAllocator* allocator_ = nullptr;
  void* data_ = nullptr;
};

}  // namespace icl::cuda
