// IclGather for CUDAExecutionProvider: validates shapes and attributes, then enqueues the gather
// on ORT's compute stream (gather_impl.cuh).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "common/low_rank_io.h"
#include "common/view.h"
#include "cuda/gather_impl.cuh"
#include "cuda/ort_util.h"

namespace icl::cuda {

class GatherKernel {
 public:
  // Called by KernelOp (common/kernel_op.h) when ORT places a node on the CUDA provider.
  // Reads and checks the view attributes (common/view.h), as the CPU kernel does: a bad
  // attribute fails here, at session creation.
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<GatherKernel>& out) {
    ViewAttrs attrs;
    Ort::Status status = ReadViewAttrs(info, std::string(kOp) + " (CUDA)", attrs);
    if (status.IsOK()) out = std::make_unique<GatherKernel>(attrs);
    return status;
  }

  explicit GatherKernel(const ViewAttrs& attrs) : attrs_(attrs) {}

  static constexpr const char* kOp = "IclGather";

  Ort::Status Compute(OrtKernelContext* context) const {
    Ort::KernelContext ctx(context);
    Ort::ConstValue w = ctx.GetInput(0);
    Ort::ConstValue indices = ctx.GetInput(1);
    const size_t inputs = ctx.GetInputCount();
    Ort::ConstValue u = inputs > 2 ? ctx.GetInput(2) : Ort::ConstValue(nullptr);
    Ort::ConstValue v = inputs > 3 ? ctx.GetInput(3) : Ort::ConstValue(nullptr);
    const auto w_info = w.GetTensorTypeAndShapeInfo();
    const auto i_info = indices.GetTensorTypeAndShapeInfo();
    GatherProblem p;
    if (!ToElemType(w_info.GetElementType(), p.w_type)) {
      return InvalidArgument(kOp, "W must be float32, float16 or bfloat16");
    }
    if (!ToIndexType(i_info.GetElementType(), p.index_type)) {
      return InvalidArgument(kOp, "indices must be int32 or int64");
    }
    p.y_type = p.w_type;
    if (attrs_.output_dtype != 0) {
      ToElemType(static_cast<int>(attrs_.output_dtype), p.y_type);  // checked by Create
    }
    const std::vector<int64_t> w_shape = w_info.GetShape();
    if (w_shape.size() != 2) return InvalidArgument(kOp, "W must be 2-D");
    ViewGeometry g;
    std::string error;
    if (!ResolveView(attrs_, w_shape[0], w_shape[1], g, error)) {
      return InvalidArgument(kOp, error);
    }
    error = CheckLowRankInputs(u, v, g.rows, g.cols, attrs_.delta_transpose != 0, p.rank);
    if (!error.empty()) return InvalidArgument(kOp, error);
    if (p.rank > 0) {
      p.u = u.GetTensorRawData();
      p.v = v.GetTensorRawData();
      p.delta_transposed = attrs_.delta_transpose != 0;
    }

    std::vector<int64_t> y_shape = i_info.GetShape();
    p.count = 1;
    for (int64_t d : y_shape) p.count *= d;
    y_shape.push_back(g.cols);
    Ort::UnownedValue y = ctx.GetOutput(0, y_shape);
    if (y.GetTensorTypeAndShapeInfo().GetElementType() !=
        static_cast<ONNXTensorElementDataType>(p.y_type)) {
      return InvalidArgument(kOp, std::string("the model types Y differently from output_dtype (") +
                                      Name(p.y_type) + "); run icl_onnx's shape inference on it");
    }
    p.w = w.GetTensorRawData();
    p.w_offset = g.offset;
    p.w_ld = g.ld;
    p.w_transposed = g.transposed;
    p.scale = attrs_.scale;
    p.rows = g.rows;
    p.cols = g.cols;
    p.indices = indices.GetTensorRawData();
    p.y = y.GetTensorMutableRawData();

    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    const cudaError_t e = LaunchGather(p, stream);
    return e == cudaSuccess ? Ort::Status(nullptr) : Failure(kOp, cudaGetErrorString(e));
  }


 private:
  ViewAttrs attrs_;
};

}  // namespace icl::cuda
