// IclMatMul for CUDAExecutionProvider: validates shapes and attributes, then enqueues the product
// on ORT's compute stream (matmul_impl.cuh).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "common/low_rank_io.h"
#include "common/view.h"
#include "cuda/matmul_impl.cuh"
#include "cuda/ort_util.h"

namespace icl::cuda {

class MatMulKernel {
 public:
  // Called by KernelOp (common/kernel_op.h) when ORT places a node on the CUDA provider.
  // Reads and checks the view attributes (common/view.h), as the CPU kernel does: a bad
  // attribute fails here, at session creation.
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<MatMulKernel>& out) {
    ViewAttrs attrs;
    Ort::Status status = ReadViewAttrs(info, std::string(kOp) + " (CUDA)", attrs);
    if (status.IsOK()) out = std::make_unique<MatMulKernel>(attrs);
    return status;
  }

  explicit MatMulKernel(const ViewAttrs& attrs) : attrs_(attrs) {}

  static constexpr const char* kOp = "IclMatMul";

  Ort::Status Compute(OrtKernelContext* context) const {
    Ort::KernelContext ctx(context);
    Ort::ConstValue a = ctx.GetInput(0);
    Ort::ConstValue w = ctx.GetInput(1);
    const size_t inputs = ctx.GetInputCount();
    Ort::ConstValue bias = inputs > 2 ? ctx.GetInput(2) : Ort::ConstValue(nullptr);
    Ort::ConstValue u = inputs > 3 ? ctx.GetInput(3) : Ort::ConstValue(nullptr);
    Ort::ConstValue v = inputs > 4 ? ctx.GetInput(4) : Ort::ConstValue(nullptr);
    const auto a_info = a.GetTensorTypeAndShapeInfo();
    const auto w_info = w.GetTensorTypeAndShapeInfo();
    MatMulProblem p;
    if (!ToElemType(a_info.GetElementType(), p.a_type) ||
        !ToElemType(w_info.GetElementType(), p.w_type)) {
      return InvalidArgument(kOp, "A and W must be float32, float16 or bfloat16");
    }
    const std::vector<int64_t> a_shape = a_info.GetShape();
    const std::vector<int64_t> w_shape = w_info.GetShape();
    if (a_shape.empty() || w_shape.size() != 2) {
      return InvalidArgument(kOp, "A needs at least one dimension and W exactly two");
    }
    ViewGeometry g;
    std::string error;
    if (!ResolveView(attrs_, w_shape[0], w_shape[1], g, error)) {
      return InvalidArgument(kOp, error);
    }
    p.k = a_shape.back();
    p.n = g.cols;
    if (g.rows != p.k) {
      return InvalidArgument(kOp, "view(W) has " + std::to_string(g.rows) +
                                      " rows but A's last dimension is " + std::to_string(p.k));
    }
    if (bias != nullptr) {
      const auto b_info = bias.GetTensorTypeAndShapeInfo();
      const std::vector<int64_t> b_shape = b_info.GetShape();
      if (b_shape.size() != 1 || b_shape[0] != p.n ||
          b_info.GetElementType() != a_info.GetElementType()) {
        return InvalidArgument(kOp, "bias must be 1-D of length N with A's type");
      }
      p.bias = bias.GetTensorRawData();
    }
    error = CheckLowRankInputs(u, v, g.rows, g.cols, attrs_.delta_transpose != 0, p.rank);
    if (!error.empty()) return InvalidArgument(kOp, error);
    if (p.rank > 0) {
      if (p.a_type != p.w_type) {
        return InvalidArgument(kOp, "on CUDA, low-rank factors need A and W of one type");
      }
      p.u = u.GetTensorRawData();
      p.v = v.GetTensorRawData();
      p.delta_transposed = attrs_.delta_transpose != 0;
    }
    p.m = 1;
    for (size_t i = 0; i + 1 < a_shape.size(); ++i) p.m *= a_shape[i];
    std::vector<int64_t> y_shape = a_shape;
    y_shape.back() = p.n;
    Ort::UnownedValue y = ctx.GetOutput(0, y_shape);
    p.a = a.GetTensorRawData();
    p.w = w.GetTensorRawData();
    p.y = y.GetTensorMutableRawData();
    p.w_offset = g.offset;
    p.w_ld = g.ld;
    p.w_transposed = g.transposed;
    p.scale = attrs_.scale;

    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    DeviceScratch scratch(ctx, a.GetTensorMemoryInfo(), MatMulWorkspaceBytes(p));
    error = LaunchMatMul(p, scratch.get(), stream);
    return error.empty() ? Ort::Status(nullptr) : Failure(kOp, error);
  }


 private:
  ViewAttrs attrs_;
};

}  // namespace icl::cuda
