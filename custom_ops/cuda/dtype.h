// Element types the CUDA kernels handle, numbered as ONNX's TensorProto.DataType so the ORT side
// and the ctypes harness pass the same codes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace icl::cuda {

enum class DType : int32_t { kFloat = 1, kFloat16 = 10, kBFloat16 = 16 };
enum class IndexType : int32_t { kInt32 = 6, kInt64 = 7 };

inline bool IsSupported(DType t) {
  return t == DType::kFloat || t == DType::kFloat16 || t == DType::kBFloat16;
}

inline bool IsSupported(IndexType t) { return t == IndexType::kInt32 || t == IndexType::kInt64; }

inline size_t ByteSize(DType t) { return t == DType::kFloat ? 4 : 2; }

inline const char* Name(DType t) {
  switch (t) {
    case DType::kFloat: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "unsupported";
}

// `p` advanced by `elements` elements of type `t`.
inline const void* Advance(const void* p, int64_t elements, DType t) {
  return static_cast<const char*>(p) + elements * static_cast<int64_t>(ByteSize(t));
}
inline void* Advance(void* p, int64_t elements, DType t) {
  return static_cast<char*>(p) + elements * static_cast<int64_t>(ByteSize(t));
}

}  // namespace icl::cuda
