// IclGather for CUDAExecutionProvider: the shared front end (common/gather_input.h) checks the
// attributes and inputs, then the gather is enqueued on ORT's compute stream (gather_impl.cuh).
// The indices stay in device memory, unread by the host: an index outside [-V, V) gives a row of
// zeros (Backend::gather_indices_on_host is false here).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "common/gather_input.h"
#include "cuda/gather_impl.cuh"
#include "cuda/ort_util.h"

namespace icl::cuda {

class GatherKernel {
 public:
  // Called by KernelOp (common/kernel_op.h) when ORT places a node on the CUDA provider: a bad
  // attribute, or a Y typed unlike output_dtype, fails here, at session creation.
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<GatherKernel>& out) {
    GatherInput input;
    Ort::Status status = GatherInput::Create(info, kBackend, input);
    if (status.IsOK()) out = std::make_unique<GatherKernel>(input);
    return status;
  }

  explicit GatherKernel(const GatherInput& input) : input_(input) {}

  // The front end this kernel reads its inputs through (the create probe runs it too).
  const GatherInput& input() const { return input_; }

  Ort::Status Compute(OrtKernelContext* context) const {
    GatherCall call;
    if (Ort::Status status = input_.Read(context, call); !status.IsOK()) return status;
    GatherProblem p;
    p.w = call.w;
    p.w_type = call.w_type;
    p.w_offset = call.view.offset;
    p.w_ld = call.view.ld;
    p.w_transposed = call.view.transposed;
    p.scale = call.scale;
    p.rows = call.view.rows;
    p.cols = call.view.cols;
    p.indices = call.indices;
    p.index_type = call.index_type;
    p.count = call.count;
    p.y = call.y;
    p.y_type = call.y_type;
    p.u = call.u;
    p.v = call.v;
    p.rank = call.rank;
    p.delta_transposed = call.delta_transposed;

    Ort::KernelContext ctx(context);
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    const cudaError_t e = LaunchGather(p, stream);
    return e == cudaSuccess ? Ort::Status(nullptr)
                            : Failure(GatherInput::kOp, cudaGetErrorString(e));
  }

 private:
  GatherInput input_;
};

}  // namespace icl::cuda
