// The element types of the ICL operators, shared by the CPU and CUDA backends (and the CUDA
// harness). Numbered as ONNX's TensorProto.DataType, so an ONNX element type, an attribute
// value (IclGather's output_dtype) and a harness dtype code convert by a cast. Free of ORT and
// CUDA headers so that nvcc-compiled launchers include it too.
#pragma once

#include <cstdint>
#include <string>

namespace icl {

// The floating-point storage types of W, A, bias and Y.
enum class ElemType : int32_t { kFloat = 1, kFloat16 = 10, kBFloat16 = 16 };

// The element types of IclGather's indices.
enum class IndexType : int32_t { kInt32 = 6, kInt64 = 7 };

// Maps an ONNX element type number to an ElemType; false for any other type.
inline bool ToElemType(int onnx_type, ElemType& out) {
  switch (onnx_type) {
    case 1: out = ElemType::kFloat; return true;
    case 10: out = ElemType::kFloat16; return true;
    case 16: out = ElemType::kBFloat16; return true;
    default: return false;
  }
}

// Maps an ONNX element type number to an IndexType; false for any other type.
inline bool ToIndexType(int onnx_type, IndexType& out) {
  switch (onnx_type) {
    case 6: out = IndexType::kInt32; return true;
    case 7: out = IndexType::kInt64; return true;
    default: return false;
  }
}

inline bool IsSupported(ElemType t) {
  return t == ElemType::kFloat || t == ElemType::kFloat16 || t == ElemType::kBFloat16;
}

inline bool IsSupported(IndexType t) { return t == IndexType::kInt32 || t == IndexType::kInt64; }

// Bytes per element.
inline int64_t SizeOf(ElemType t) { return t == ElemType::kFloat ? 4 : 2; }

inline const char* Name(ElemType t) {
  switch (t) {
    case ElemType::kFloat: return "float32";
    case ElemType::kFloat16: return "float16";
    case ElemType::kBFloat16: return "bfloat16";
  }
  return "unsupported";
}

// The name of an ONNX element type number: an ElemType's name, else "element type N".
inline std::string OnnxTypeName(int onnx_type) {
  ElemType t;
  return ToElemType(onnx_type, t) ? Name(t) : "element type " + std::to_string(onnx_type);
}

// `p` advanced by `elements` elements of type `t`.
inline const void* Advance(const void* p, int64_t elements, ElemType t) {
  return static_cast<const char*>(p) + elements * SizeOf(t);
}
inline void* Advance(void* p, int64_t elements, ElemType t) {
  return static_cast<char*>(p) + elements * SizeOf(t);
}

}  // namespace icl
