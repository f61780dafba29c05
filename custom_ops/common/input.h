// What the operators' input front ends (common/*_input.h) share. A front end reads a node's
// attributes once, when ORT creates the kernel, and its inputs once per call; it checks every
// value a model supplies (attributes, shapes, element types, indices) with overflow-safe
// arithmetic (common/checked_math.h), allocates Y, and hands the backend a validated call
// struct, so that backend code holds arithmetic and launches only. The CPU and CUDA kernels run
// the same front end, each with its Backend, so one bad model gets one message on both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checked_math.h"
#include "common/elem_type.h"
#include "onnxruntime_cxx_api.h"

namespace icl {

// What a backend computes, handed to every front end: a node a backend cannot run is refused
// there, with the wording every backend shares.
struct Backend {
  const char* label;  // after the op name in messages: "" (CPU) or " (CUDA)"
  // IclMatMul's low-rank term with a cast view (W's type differs from A's).
  bool low_rank_with_cast_view;
  // IclGather's indices are host memory, so every index is checked before Y is written. Else
  // (CUDA: device memory) an index outside [-V, V) gives a row of zeros, as ORT's CUDA Gather.
  bool gather_indices_on_host;
};

// The ORT_INVALID_ARGUMENT status "<op><label>: <message>" every front end returns.
inline Ort::Status Refuse(const char* op, const Backend& backend, const std::string& message) {
  return Ort::Status((std::string(op) + backend.label + ": " + message).c_str(),
                     ORT_INVALID_ARGUMENT);
}

// One input as the checks see it: absent, or its ONNX element type and shape.
struct TensorDesc {
  bool present = false;
  int onnx_type = 0;
  std::vector<int64_t> shape;
};

// Input `index` of the call, or a null value when the node lacks it (an absent optional input).
inline Ort::ConstValue OptionalInput(const Ort::KernelContext& ctx, size_t index) {
  return index < ctx.GetInputCount() ? ctx.GetInput(index) : Ort::ConstValue(nullptr);
}

inline TensorDesc Describe(const Ort::ConstValue& value) {
  TensorDesc d;
  if (value == nullptr) return d;
  const auto info = value.GetTensorTypeAndShapeInfo();
  d.present = true;
  d.onnx_type = static_cast<int>(info.GetElementType());
  d.shape = info.GetShape();
  return d;
}

// The message both backends give for an index outside [-rows, rows).
inline std::string IndexOutOfRangeMessage(int64_t index, int64_t rows) {
  return "index " + std::to_string(index) + " is outside [-" + std::to_string(rows) + ", " +
         std::to_string(rows) + ")";
}

// Copies `count` indices to int64 row numbers in [0, rows), wrapping negatives; on an index
// outside [-rows, rows) returns the message and writes nothing further.
template <typename Index>
std::string NormalizeRowIndices(const Index* in, int64_t count, int64_t rows, int64_t* out) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t v = static_cast<int64_t>(in[i]);
    if (v < -rows || v >= rows) return IndexOutOfRangeMessage(v, rows);
    out[i] = v < 0 ? v + rows : v;
  }
  return "";
}

// Reads `count` host indices (int32 or int64) as row numbers in [0, rows); "" or the first bad
// index's message.
inline std::string ReadRowIndices(const Ort::ConstValue& indices, IndexType type, int64_t count,
                                  int64_t rows, std::vector<int64_t>& out) {
  out.resize(static_cast<size_t>(count));
  return type == IndexType::kInt32
             ? NormalizeRowIndices(indices.GetTensorData<int32_t>(), count, rows, out.data())
             : NormalizeRowIndices(indices.GetTensorData<int64_t>(), count, rows, out.data());
}

// Checks the indices' type and the output Y[indices.shape..., row_len] of `y_element_size`-byte
// elements (its byte size must fit int64); sets the index count and Y's shape.
inline std::string CheckGatherShapes(const TensorDesc& indices, int64_t row_len,
                                     int64_t y_element_size, IndexType& type, int64_t& count,
                                     std::vector<int64_t>& y_shape) {
  if (!ToIndexType(indices.onnx_type, type)) return "indices must be int32 or int64";
  if (!ElementCount(indices.shape, count)) {
    return "indices " + ShapeString(indices.shape) + " has too many elements";
  }
  y_shape = indices.shape;
  y_shape.push_back(row_len);
  return CheckTensorSize("Y", y_shape, y_element_size);
}

}  // namespace icl
