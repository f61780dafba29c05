// IclMatMul for CUDAExecutionProvider: the shared front end (common/matmul_input.h) checks the
// attributes and inputs, then the product is enqueued on ORT's compute stream (matmul_impl.cuh).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "common/matmul_input.h"
#include "cuda/matmul_impl.cuh"
#include "cuda/ort_util.h"
#include "cuda/variant_rows_impl.cuh"

namespace icl::cuda {

class MatMulKernel {
 public:
  // Called by KernelOp (common/kernel_op.h) when ORT places a node on the CUDA provider: a bad
  // attribute fails here, at session creation, with the CPU kernel's message.
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<MatMulKernel>& out) {
    MatMulInput input;
    Ort::Status status = MatMulInput::Create(info, kBackend, input);
    if (status.IsOK()) out = std::make_unique<MatMulKernel>(input);
    return status;
  }

  // Input 5 (variant_ids) lives in host memory, where the front end checks every id; the
  // others on the device.
  static OrtMemType InputMemoryType(size_t index) {
    return index == 5 ? OrtMemTypeCPUInput : OrtMemTypeDefault;
  }

  explicit MatMulKernel(const MatMulInput& input) : input_(input) {}

  // The front end this kernel reads its inputs through (the create probe runs it too).
  const MatMulInput& input() const { return input_; }

  Ort::Status Compute(OrtKernelContext* context) const {
    MatMulCall call;
    if (Ort::Status status = input_.Read(context, call); !status.IsOK()) return status;
    MatMulProblem p;
    p.a = call.a;
    p.a_type = call.a_type;
    p.w = call.w;
    p.w_type = call.w_type;
    p.w_offset = call.view.offset;
    p.w_ld = call.view.ld;
    p.w_transposed = call.view.transposed;
    p.scale = call.scale;
    p.bias = call.bias;
    p.y = call.y;
    p.m = call.m;
    p.k = call.k;
    p.n = call.n;
    p.u = call.u;
    p.v = call.v;
    p.rank = call.rank;
    p.delta_transposed = call.delta_transposed;
    p.cublas_handle = CudaResource(context, kCublasHandleResource);
    p.tf32 = CudaResource(context, kUseTf32Resource) != nullptr;

    Ort::KernelContext ctx(context);
    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    if (call.variants > 0) {  // each batch row with its own variant's factors
      VariantRows rows;
      rows.ids = call.variant_ids.data();
      rows.batch = static_cast<int64_t>(call.variant_ids.size());
      rows.rows_per_batch = call.rows_per_batch;
      rows.u_elements = call.VariantUElements();
      rows.v_elements = call.VariantVElements();
      DeviceScratch scratch(ctx, ctx.GetInput(0).GetTensorMemoryInfo(),
                            VariantMatMulWorkspaceBytes(p, rows));
      const std::string error = LaunchVariantMatMul(p, rows, scratch.get(), stream);
      return error.empty() ? Ort::Status(nullptr) : Failure(MatMulInput::kOp, error);
    }
    DeviceScratch scratch(ctx, ctx.GetInput(0).GetTensorMemoryInfo(), MatMulWorkspaceBytes(p));
    const std::string error = LaunchMatMul(p, scratch.get(), stream);
    return error.empty() ? Ort::Status(nullptr) : Failure(MatMulInput::kOp, error);
  }

 private:
  MatMulInput input_;
};

}  // namespace icl::cuda
