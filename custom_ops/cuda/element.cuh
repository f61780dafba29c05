// Device-side conversions between the three element types; all arithmetic is done in float32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/elem_type.h"

namespace icl::cuda {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with the C++ type of `t`; returns cudaErrorInvalidValue for other types.
template <typename F>
cudaError_t DispatchDType(ElemType t, F&& f) {
  switch (t) {
    case ElemType::kFloat: return f(TypeTag<float>{});
    case ElemType::kFloat16: return f(TypeTag<__half>{});
    case ElemType::kBFloat16: return f(TypeTag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace icl::cuda
