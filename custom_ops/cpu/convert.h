// Bulk conversions between the storage types and float32, vectorised where the CPU allows.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/element.h"

namespace icl::cpu {

// dst[i] = scale * float(src[i]) for i < n; src holds elements of type `src_type`.
void ToFloat(ElemType src_type, const void* src, float* dst, int64_t n, float scale = 1.0f);

// `count` elements of `type` as float32: `data` itself when it is float32, else widened into
// `widened`.
const float* AsFloat(const void* data, int64_t count, ElemType type, std::vector<float>& widened);

// dst[i] = src[i] rounded to `dst_type` (nearest even) for i < n.
void FromFloat(const float* src, ElemType dst_type, void* dst, int64_t n);

// dst[i] = scale * float(src[i * stride]) for i < n: a column of a row-major matrix.
void StridedToFloat(ElemType src_type, const void* src, int64_t stride, float* dst, int64_t n,
                    float scale = 1.0f);

}  // namespace icl::cpu
