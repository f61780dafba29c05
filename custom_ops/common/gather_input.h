// IclGather's input front end (common/input.h), shared by the CPU and CUDA kernels: the view
// attributes and Y's declared type at kernel creation, then per call W's type and shape, the
// view's fit in W, the low-rank factors, the indices (every one, where the backend reads them
// on the host) and the size of Y, before a byte of Y is written.
#pragma once

#include <string>
#include <vector>

#include "common/input.h"
#include "common/low_rank.h"
#include "common/view.h"

namespace icl {

// One checked IclGather call: Y[t, :] = (scale * view(W) + delta)[indices[t], :] in y_type.
struct GatherCall {
  ElemType w_type = ElemType::kFloat;  // W, U and V
  ElemType y_type = ElemType::kFloat;
  IndexType index_type = IndexType::kInt64;
  ViewGeometry view;  // view(W) is [rows, cols], inside W
  float scale = 1.0f;
  int64_t count = 0;  // indices
  int64_t rank = 0;   // of the low-rank term (common/low_rank.h); 0: none
  bool delta_transposed = false;
  const void* w = nullptr;
  const void* indices = nullptr;  // [count], the backend's memory
  // The indices as row numbers in [0, view.rows), when Backend::gather_indices_on_host.
  std::vector<int64_t> rows;
  const void* u = nullptr;  // [rows, rank] ([cols, rank] when delta_transposed), or null
  const void* v = nullptr;  // [rank, cols] ([rank, rows] when delta_transposed), or null
  void* y = nullptr;        // [count, cols] of y_type
};

// IclGather's checks on types and shapes alone (`call.y_type` set by the caller): fills `call`'s
// types and sizes and Y's shape; returns "" or what is wrong. The indices' values are checked
// by GatherInput::Read.
inline std::string CheckGather(const ViewAttrs& attrs, const TensorDesc& w,
                               const TensorDesc& indices, const TensorDesc& u,
                               const TensorDesc& v, GatherCall& call,
                               std::vector<int64_t>& y_shape) {
  if (!ToElemType(w.onnx_type, call.w_type)) return "W must be float32, float16 or bfloat16";
  if (w.shape.size() != 2) return "W must be 2-D, got " + ShapeString(w.shape);
  std::string error;
  if (!ResolveView(attrs, w.shape[0], w.shape[1], call.view, error)) return error;
  error = CheckGatherShapes(indices, call.view.cols, SizeOf(call.y_type), call.index_type,
                            call.count, y_shape);
  if (!error.empty()) return error;
  if ((u.present && u.onnx_type != w.onnx_type) || (v.present && v.onnx_type != w.onnx_type)) {
    return "U and V must have W's type";
  }
  call.delta_transposed = attrs.delta_transpose != 0;
  return CheckLowRankShapes(u.present, u.shape, v.present, v.shape, call.view.rows,
                            call.view.cols, call.delta_transposed, call.rank);
}

// IclGather's front end: one per kernel, built when ORT creates the kernel.
class GatherInput {
 public:
  static constexpr const char* kOp = "IclGather";
  using Call = GatherCall;

  // Reads and checks the view attributes, and that the model declares Y with output_dtype's
  // type (W's when 0): a mismatch fails here, at session creation.
  static Ort::Status Create(const OrtKernelInfo* info, const Backend& backend, GatherInput& out) {
    out.backend_ = &backend;
    if (Ort::Status s = ReadViewAttrs(info, std::string(kOp) + backend.label, out.attrs_);
        !s.IsOK()) {
      return s;
    }
    const Ort::ConstKernelInfo kernel_info(info);
    const auto w_onnx =
        kernel_info.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetElementType();
    const auto y_onnx =
        kernel_info.GetOutputTypeInfo(0).GetTensorTypeAndShapeInfo().GetElementType();
    const auto wanted = out.attrs_.output_dtype == 0
                            ? w_onnx
                            : static_cast<ONNXTensorElementDataType>(out.attrs_.output_dtype);
    // An output_dtype other than 0 and the three float types is refused by ReadViewAttrs
    // above, so only W's own type (output_dtype 0) can fail here.
    if (!ToElemType(wanted, out.y_type_)) {
      return Refuse(kOp, backend,
                    "W must be float32, float16 or bfloat16, got " + OnnxTypeName(wanted));
    }
    if (y_onnx != wanted) {
      return Refuse(kOp, backend,
                    "the model declares Y as " + OnnxTypeName(y_onnx) +
                        " but output_dtype makes it " + Name(out.y_type_) +
                        "; declare Y's type (value_info) to match output_dtype");
    }
    return Ort::Status{nullptr};
  }

  // Reads and checks one call's inputs (and, on a backend that reads them on the host, every
  // index) and allocates Y; an error status names what is wrong.
  Ort::Status Read(OrtKernelContext* context, GatherCall& call) const {
    Ort::KernelContext ctx(context);
    const Ort::ConstValue w = ctx.GetInput(0), indices = ctx.GetInput(1);
    const Ort::ConstValue u = OptionalInput(ctx, 2), v = OptionalInput(ctx, 3);
    std::vector<int64_t> y_shape;
    call.y_type = y_type_;
    std::string error =
        CheckGather(attrs_, Describe(w), Describe(indices), Describe(u), Describe(v), call, y_shape);
    if (error.empty() && backend_->gather_indices_on_host) {
      error = ReadRowIndices(indices, call.index_type, call.count, call.view.rows, call.rows);
    }
    if (!error.empty()) return Refuse(kOp, *backend_, error);
    call.scale = attrs_.scale;
    call.w = w.GetTensorRawData();
    call.indices = indices.GetTensorRawData();
    call.u = call.rank > 0 ? u.GetTensorRawData() : nullptr;
    call.v = call.rank > 0 ? v.GetTensorRawData() : nullptr;
    call.y = ctx.GetOutput(0, y_shape).GetTensorMutableRawData();
    return Ort::Status{nullptr};
  }

 private:
  ViewAttrs attrs_;
  ElemType y_type_ = ElemType::kFloat;
  const Backend* backend_ = nullptr;
};

}  // namespace icl
