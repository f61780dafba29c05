// The element types the CPU kernels compute with, and scalar conversions to and from float.
#pragma once

#include <cstdint>
#include <cstring>

#include "onnxruntime_c_api.h"

namespace icl::cpu {

// The floating-point storage types the ICL operators accept.
enum class ElemType { kFloat, kFloat16, kBFloat16 };

// Maps an ONNX element type to an ElemType; returns false for any other type.
inline bool ToElemType(ONNXTensorElementDataType onnx_type, ElemType& out) {
  switch (onnx_type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: out = ElemType::kFloat; return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: out = ElemType::kFloat16; return true;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: out = ElemType::kBFloat16; return true;
    default: return false;
  }
}

inline int64_t SizeOf(ElemType t) { return t == ElemType::kFloat ? 4 : 2; }

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// bfloat16 is the upper half of a float32.
inline float BFloat16ToFloat(uint16_t b) { return BitsToFloat(static_cast<uint32_t>(b) << 16); }

// Rounds to nearest even, as numpy/ml_dtypes and ONNX Runtime do; NaN stays NaN.
inline uint16_t FloatToBFloat16(float f) {
  uint32_t x = FloatBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

// IEEE binary16 to float32, exact (subnormals, infinities and NaN included).
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float32.
    const float v = static_cast<float>(mant) * BitsToFloat(0x33800000u);
    return BitsToFloat(FloatBits(v) | sign);
  }
  if (exp == 31) return BitsToFloat(sign | 0x7f800000u | (mant << 13));
  return BitsToFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

// float32 to IEEE binary16, rounding to nearest even (overflow gives infinity).
inline uint16_t FloatToHalf(float f) {
  uint32_t x = FloatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  uint32_t h;
  if (x >= 0x47800000u) {  // >= 65536, infinity or NaN
    h = x > 0x7f800000u ? 0x7e00u | ((x >> 13) & 0x3ffu) : 0x7c00u;
  } else if (x < 0x38800000u) {  // below the smallest normal half: let the FPU round
    h = FloatBits(BitsToFloat(x) + 0.5f) - 0x3f000000u;
  } else {
    const uint32_t odd = (x >> 13) & 1u;
    h = (x + 0xc8000fffu + odd) >> 13;  // rebias the exponent (-112 << 23) and round
  }
  return static_cast<uint16_t>(h | sign);
}

// Storage types of 16-bit elements, distinct so that overloads can tell them apart.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

inline float ToFloat(float v) { return v; }
inline float ToFloat(Half v) { return HalfToFloat(v.bits); }
inline float ToFloat(BFloat16 v) { return BFloat16ToFloat(v.bits); }

// Reads element i of a tensor of type t as float.
inline float LoadAsFloat(ElemType t, const void* data, int64_t i) {
  switch (t) {
    case ElemType::kFloat: return static_cast<const float*>(data)[i];
    case ElemType::kFloat16: return HalfToFloat(static_cast<const uint16_t*>(data)[i]);
    default: return BFloat16ToFloat(static_cast<const uint16_t*>(data)[i]);
  }
}

}  // namespace icl::cpu
