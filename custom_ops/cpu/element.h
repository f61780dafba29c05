// The element types as the CPU kernels store and read them: float, and ORT's 16-bit
// Ort::Float16_t and Ort::BFloat16_t (distinct types, so that overloads tell them apart).
#pragma once

#include <cstdint>

#include "common/elem_type.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

inline float ToFloat(float v) { return v; }
inline float ToFloat(Ort::Float16_t v) { return v.ToFloat(); }
inline float ToFloat(Ort::BFloat16_t v) { return v.ToFloat(); }

// Reads element i of a tensor of type t as float.
inline float LoadAsFloat(ElemType t, const void* data, int64_t i) {
  switch (t) {
    case ElemType::kFloat: return static_cast<const float*>(data)[i];
    case ElemType::kFloat16: return static_cast<const Ort::Float16_t*>(data)[i].ToFloat();
    case ElemType::kBFloat16: return static_cast<const Ort::BFloat16_t*>(data)[i].ToFloat();
  }
  return 0.0f;
}

}  // namespace icl::cpu
