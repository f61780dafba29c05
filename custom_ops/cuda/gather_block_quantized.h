// IclGatherBlockQuantized for CUDAExecutionProvider: the shared front end
// (common/gather_block_quantized_input.h) checks the attributes, inputs and every index with the
// CPU kernel's messages, then the gather is enqueued on ORT's compute stream
// (gather_block_quantized_impl.cuh).
//
// The indices are a CPU input (ORT copies them to host memory when a GPU node produces them):
// the host checks every index with no device synchronisation, then copies the row numbers to
// device scratch.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "common/gather_block_quantized_input.h"
#include "cuda/gather_block_quantized_impl.cuh"
#include "cuda/ort_util.h"

namespace icl::cuda {

class GatherBlockQuantizedKernel {
 public:
  static Ort::Status Create(const OrtKernelInfo* info,
                            std::unique_ptr<GatherBlockQuantizedKernel>& out) {
    GatherBlockQuantizedInput input;
    Ort::Status status = GatherBlockQuantizedInput::Create(info, kBackend, input);
    if (status.IsOK()) out = std::make_unique<GatherBlockQuantizedKernel>(input);
    return status;
  }

  // Input 1 (indices) lives in host memory; the others on the device.
  static OrtMemType InputMemoryType(size_t index) {
    return index == 1 ? OrtMemTypeCPUInput : OrtMemTypeDefault;
  }

  explicit GatherBlockQuantizedKernel(const GatherBlockQuantizedInput& input) : input_(input) {}

  // The front end this kernel reads its inputs through (the create probe runs it too).
  const GatherBlockQuantizedInput& input() const { return input_; }

  Ort::Status Compute(OrtKernelContext* context) const {
    GatherBlockQuantizedCall call;
    if (Ort::Status status = input_.Read(context, call); !status.IsOK()) return status;
    BlockGatherProblem p;
    p.geometry = call.geometry;
    p.type = call.type;
    p.count = static_cast<int64_t>(call.rows.size());
    if (p.count == 0) return Ort::Status(nullptr);
    p.b = call.b;
    p.scales = call.scales;
    p.zero_points = call.zero_points;
    p.y = call.y;

    Ort::KernelContext ctx(context);
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    const size_t bytes = call.rows.size() * sizeof(int64_t);
    DeviceScratch device_rows(ctx, ctx.GetInput(0).GetTensorMemoryInfo(), bytes);
    p.rows = static_cast<const int64_t*>(device_rows.get());
    // From pageable memory: returns once `rows` is staged, so it may go out of scope after.
    cudaError_t e = cudaMemcpyAsync(device_rows.get(), call.rows.data(), bytes,
                                    cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess) e = LaunchGatherBlockQuantized(p, stream);
    return e == cudaSuccess ? Ort::Status(nullptr)
                            : Failure(GatherBlockQuantizedInput::kOp, cudaGetErrorString(e));
  }

 private:
  GatherBlockQuantizedInput input_;
};

}  // namespace icl::cuda
