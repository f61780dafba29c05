// IclGatherBlockQuantized's input front end (common/input.h), shared by the CPU and CUDA
// kernels: the attributes K, bits and block_size at kernel creation, then per call the types,
// the block layout of B, scales and zero_points (common/block_quant.h), every index (both
// backends read the indices on the host: the CUDA kernel declares them a CPU input) and the
// size of Y, before a byte of Y is written.
#pragma once

#include <string>
#include <vector>

#include "common/block_quant.h"
#include "common/input.h"

namespace icl {

// One checked IclGatherBlockQuantized call: Y[t, :] = dequantized row rows[t] of B, in `type`.
struct GatherBlockQuantizedCall {
  BlockQuantGeometry geometry;
  ElemType type = ElemType::kFloat;  // scales and Y
  const uint8_t* b = nullptr;            // [n, row_bytes]
  const void* scales = nullptr;          // [n, n_blocks] of `type`
  const uint8_t* zero_points = nullptr;  // [n, zero_point_row_bytes], or nullptr
  std::vector<int64_t> rows;             // the indices as row numbers in [0, n), host memory
  void* y = nullptr;                     // [rows.size(), k] of `type`
};

// Reads the required attributes K, bits and block_size and checks them; "" or what is wrong.
inline std::string ReadBlockQuantAttrs(const OrtKernelInfo* info, BlockQuantAttrs& attrs) {
  for (auto [name, value] : {std::pair{"K", &attrs.k}, std::pair{"bits", &attrs.bits},
                             std::pair{"block_size", &attrs.block_size}}) {
    OrtStatus* s = Ort::GetApi().KernelInfoGetAttribute_int64(info, name, value);
    if (s != nullptr) {
      Ort::GetApi().ReleaseStatus(s);
      return std::string("the attribute ") + name + " is required";
    }
  }
  return CheckBlockQuantAttrs(attrs);
}

// IclGatherBlockQuantized's checks on types and shapes alone: fills `call`'s geometry and type,
// the index type and count and Y's shape; returns "" or what is wrong.
inline std::string CheckGatherBlockQuantized(const BlockQuantAttrs& attrs, const TensorDesc& b,
                                             const TensorDesc& indices, const TensorDesc& scales,
                                             const TensorDesc& zero_points,
                                             GatherBlockQuantizedCall& call, IndexType& index_type,
                                             int64_t& count, std::vector<int64_t>& y_shape) {
  constexpr int kUint8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  if (!ToElemType(scales.onnx_type, call.type)) {
    return "scales must be float32, float16 or bfloat16";
  }
  if (b.onnx_type != kUint8 || (zero_points.present && zero_points.onnx_type != kUint8)) {
    return "B and zero_points must be uint8";
  }
  int64_t scale_count = 0, zero_point_count = -1;
  if (!ElementCount(scales.shape, scale_count) ||
      (zero_points.present && !ElementCount(zero_points.shape, zero_point_count))) {
    return "scales or zero_points has a negative dimension or too many elements";
  }
  std::string error = ResolveBlockQuant(attrs, b.shape, scale_count, zero_point_count,
                                        call.geometry);
  if (!error.empty()) return error;
  return CheckGatherShapes(indices, call.geometry.k, SizeOf(call.type), index_type, count,
                           y_shape);
}

// IclGatherBlockQuantized's front end: one per kernel, built when ORT creates the kernel.
class GatherBlockQuantizedInput {
 public:
  static constexpr const char* kOp = "IclGatherBlockQuantized";
  using Call = GatherBlockQuantizedCall;

  // Reads and checks the attributes: a bad one fails here, at session creation.
  static Ort::Status Create(const OrtKernelInfo* info, const Backend& backend,
                            GatherBlockQuantizedInput& out) {
    out.backend_ = &backend;
    const std::string error = ReadBlockQuantAttrs(info, out.attrs_);
    return error.empty() ? Ort::Status{nullptr} : Refuse(kOp, backend, error);
  }

  // Reads and checks one call's inputs and every index, and allocates Y; an error status names
  // what is wrong.
  Ort::Status Read(OrtKernelContext* context, GatherBlockQuantizedCall& call) const {
    Ort::KernelContext ctx(context);
    const Ort::ConstValue b = ctx.GetInput(0), indices = ctx.GetInput(1),
                          scales = ctx.GetInput(2), zero_points = OptionalInput(ctx, 3);
    IndexType index_type = IndexType::kInt64;
    int64_t count = 0;
    std::vector<int64_t> y_shape;
    std::string error =
        CheckGatherBlockQuantized(attrs_, Describe(b), Describe(indices), Describe(scales),
                                  Describe(zero_points), call, index_type, count, y_shape);
    if (error.empty()) {
      error = ReadRowIndices(indices, index_type, count, call.geometry.n, call.rows);
    }
    if (!error.empty()) return Refuse(kOp, *backend_, error);
    call.b = b.GetTensorData<uint8_t>();
    call.scales = scales.GetTensorRawData();
    call.zero_points = zero_points ? zero_points.GetTensorData<uint8_t>() : nullptr;
    call.y = ctx.GetOutput(0, y_shape).GetTensorMutableRawData();
    return Ort::Status{nullptr};
  }

 private:
  BlockQuantAttrs attrs_;
  const Backend* backend_ = nullptr;
};

}  // namespace icl
