#include "cpu/gather_kernel.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/block_quant_io.h"
#include "cpu/convert.h"
#include "cpu/low_rank.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"

namespace icl::cpu {
namespace {

// Output elements per thread-pool task: small gathers run inline.
constexpr int64_t kElementsPerTask = 1 << 16;

Ort::Status Error(const std::string& message, OrtErrorCode code = ORT_INVALID_ARGUMENT) {
  return Ort::Status(("IclGather: " + message).c_str(), code);
}

ONNXTensorElementDataType DeclaredType(const OrtKernelInfo* info, bool input, size_t index) {
  const Ort::ConstKernelInfo kernel_info(info);
  const Ort::TypeInfo type =
      input ? kernel_info.GetInputTypeInfo(index) : kernel_info.GetOutputTypeInfo(index);
  return type.GetTensorTypeAndShapeInfo().GetElementType();
}

}  // namespace

Ort::Status GatherKernel::Create(const OrtKernelInfo* info, std::unique_ptr<GatherKernel>& out) {
  ViewAttrs attrs;
  if (Ort::Status status = ReadViewAttrs(info, "IclGather", attrs); !status.IsOK()) return status;
  const auto w_onnx = DeclaredType(info, /*input=*/true, 0);
  const auto y_onnx = DeclaredType(info, /*input=*/false, 0);
  const auto wanted =
      attrs.output_dtype == 0 ? w_onnx : static_cast<ONNXTensorElementDataType>(attrs.output_dtype);
  ElemType y_type;
  if (!ToElemType(wanted, y_type)) return Error("W must be float32, float16 or bfloat16");
  if (y_onnx != wanted) {
    return Error("the model declares Y with element type " + std::to_string(y_onnx) +
                 " but output_dtype makes it " + std::to_string(wanted) +
                 "; declare Y's type (value_info) to match output_dtype");
  }
  out.reset(new GatherKernel(attrs, y_type));
  return Ort::Status{nullptr};
}

Ort::Status GatherKernel::Compute(OrtKernelContext* context) {
  Ort::KernelContext ctx(context);
  const Ort::ConstValue w = ctx.GetInput(0);
  const Ort::ConstValue indices = ctx.GetInput(1);
  const size_t inputs = ctx.GetInputCount();
  const Ort::ConstValue u = inputs > 2 ? ctx.GetInput(2) : Ort::ConstValue(nullptr);
  const Ort::ConstValue v = inputs > 3 ? ctx.GetInput(3) : Ort::ConstValue(nullptr);
  const auto w_info = w.GetTensorTypeAndShapeInfo();
  const auto idx_info = indices.GetTensorTypeAndShapeInfo();
  ElemType w_type;
  if (!ToElemType(w_info.GetElementType(), w_type)) {
    return Error("W must be float32, float16 or bfloat16");
  }
  const std::vector<int64_t> w_shape = w_info.GetShape();
  if (w_shape.size() != 2) return Error("W must be 2-D");
  ViewGeometry view;
  std::string error;
  if (!ResolveView(attrs_, w_shape[0], w_shape[1], view, error)) return Error(error);
  std::vector<float> u_float, v_float;
  LowRankTerm delta;
  error = ReadLowRank(u, v, w_type, view, attrs_.delta_transpose != 0, u_float, v_float, delta);
  if (!error.empty()) return Error(error);

  // Check every index before writing anything.
  std::vector<int64_t> rows;
  error = ReadRowIndices(indices, view.rows, rows);
  if (!error.empty()) return Error(error);
  const int64_t count = static_cast<int64_t>(rows.size());

  std::vector<int64_t> y_shape = idx_info.GetShape();
  const int64_t h = view.cols;
  y_shape.push_back(h);
  Ort::UnownedValue y = ctx.GetOutput(0, y_shape);
  char* y_data = static_cast<char*>(y.GetTensorMutableRawData());
  const char* w_data = static_cast<const char*>(w.GetTensorRawData());
  const int64_t w_size = SizeOf(w_type), y_size = SizeOf(y_type_);
  // A plain copy when the view keeps rows contiguous and changes no value.
  const bool copy_rows =
      !view.transposed && w_type == y_type_ && attrs_.scale == 1.0f && delta.rank == 0;

  // One row of view(W): contiguous at offset + r * ld, or (transposed) a column of W.
  auto gather_row = [&](int64_t i) {
    const int64_t r = rows[static_cast<size_t>(i)];
    char* dst = y_data + i * h * y_size;
    if (copy_rows) {
      std::memcpy(dst, w_data + (view.offset + r * view.ld) * w_size,
                  static_cast<size_t>(h * w_size));
      return;
    }
    float* row = ThreadScratch(ScratchSlot::kRow, static_cast<size_t>(h));
    if (view.transposed) {
      StridedToFloat(w_type, w_data + (view.offset + r) * w_size, view.ld, row, h, attrs_.scale);
    } else {
      ToFloat(w_type, w_data + (view.offset + r * view.ld) * w_size, row, h, attrs_.scale);
    }
    if (delta.rank > 0) LowRankAddRow(delta, r, row);
    FromFloat(row, y_type_, dst, h);
  };
  const int64_t rows_per_task = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(h, 1));
  return ParallelFor(context, ChunkCount(count, rows_per_task), [&](int64_t t) {
    const int64_t end = std::min(count, (t + 1) * rows_per_task);
    for (int64_t i = t * rows_per_task; i < end; ++i) gather_row(i);
  });
}

}  // namespace icl::cpu
