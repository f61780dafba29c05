// IclGatherBlockQuantized's ORT-facing checks, shared by the CPU and CUDA kernels so that both
// refuse the same nodes and inputs with the same messages: the attributes (at kernel creation),
// the geometry of B, scales and zero_points, and the indices, which both backends read on the
// host (the CUDA kernel declares them CPU inputs).
#pragma once

#include <string>
#include <vector>

#include "common/block_quant.h"
#include "onnxruntime_cxx_api.h"

namespace icl {

// Reads the required attributes K, bits and block_size and checks them; returns "" or what is
// wrong.
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

// Resolves the geometry of one call from B, scales and zero_points (absent: an empty value).
inline std::string ResolveBlockQuantInputs(const BlockQuantAttrs& attrs, const Ort::ConstValue& b,
                                           const Ort::ConstValue& scales,
                                           const Ort::ConstValue& zero_points,
                                           BlockQuantGeometry& g) {
  const int64_t zero_point_count =
      zero_points ? static_cast<int64_t>(zero_points.GetTensorTypeAndShapeInfo().GetElementCount())
                  : -1;
  return ResolveBlockQuant(
      attrs, b.GetTensorTypeAndShapeInfo().GetShape(),
      static_cast<int64_t>(scales.GetTensorTypeAndShapeInfo().GetElementCount()),
      zero_point_count, g);
}

// Reads the indices (host memory, int32 or int64) as row numbers in [0, rows); returns "" or
// the first bad index's message.
inline std::string ReadRowIndices(const Ort::ConstValue& indices, int64_t rows,
                                  std::vector<int64_t>& out) {
  const auto info = indices.GetTensorTypeAndShapeInfo();
  const int64_t count = static_cast<int64_t>(info.GetElementCount());
  out.resize(static_cast<size_t>(count));
  switch (info.GetElementType()) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return NormalizeRowIndices(indices.GetTensorData<int32_t>(), count, rows, out.data());
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return NormalizeRowIndices(indices.GetTensorData<int64_t>(), count, rows, out.data());
    default:
      return "indices must be int32 or int64";
  }
}

}  // namespace icl
