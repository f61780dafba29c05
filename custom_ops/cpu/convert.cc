// Bulk conversions: F16C and AVX2 where the CPU has them (detected at run time, so the
// library still loads on any x86-64), portable scalar code otherwise.
#include "cpu/convert.h"

#include <immintrin.h>

#include <cstring>

#include "cpu/isa.h"

namespace icl::cpu {
namespace {

__attribute__((target("avx2,f16c"))) void HalfToFloatF16c(const uint16_t* src, float* dst,
                                                          int64_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtph_ps(h), s));
  }
  for (; i < n; ++i) dst[i] = scale * Ort::Float16_t::FromBits(src[i]).ToFloat();
}

__attribute__((target("avx2,f16c"))) void FloatToHalfF16c(const float* src, uint16_t* dst,
                                                          int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = Ort::Float16_t(src[i]).val;
}

__attribute__((target("avx2"))) void BFloat16ToFloatAvx2(const uint16_t* src, float* dst,
                                                         int64_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16);
    _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_castsi256_ps(w), s));
  }
  for (; i < n; ++i) dst[i] = scale * Ort::BFloat16_t::FromBits(src[i]).ToFloat();
}

}  // namespace

void ToFloat(ElemType src_type, const void* src, float* dst, int64_t n, float scale) {
  const bool simd = CpuIsa() >= Isa::kAvx2;
  switch (src_type) {
    case ElemType::kFloat: {
      const float* s = static_cast<const float*>(src);
      if (scale == 1.0f) {
        if (s != dst) std::memmove(dst, s, static_cast<size_t>(n) * sizeof(float));
      } else {
        for (int64_t i = 0; i < n; ++i) dst[i] = scale * s[i];
      }
      return;
    }
    case ElemType::kFloat16: {
      if (simd) return HalfToFloatF16c(static_cast<const uint16_t*>(src), dst, n, scale);
      const auto* s = static_cast<const Ort::Float16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = scale * s[i].ToFloat();
      return;
    }
    case ElemType::kBFloat16: {
      if (simd) return BFloat16ToFloatAvx2(static_cast<const uint16_t*>(src), dst, n, scale);
      const auto* s = static_cast<const Ort::BFloat16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = scale * s[i].ToFloat();
      return;
    }
  }
}

void FromFloat(const float* src, ElemType dst_type, void* dst, int64_t n) {
  switch (dst_type) {
    case ElemType::kFloat:
      if (src != dst) std::memmove(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case ElemType::kFloat16: {
      if (CpuIsa() >= Isa::kAvx2) return FloatToHalfF16c(src, static_cast<uint16_t*>(dst), n);
      auto* d = static_cast<Ort::Float16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = Ort::Float16_t(src[i]);
      return;
    }
    case ElemType::kBFloat16: {
      auto* d = static_cast<Ort::BFloat16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = Ort::BFloat16_t(src[i]);
      return;
    }
  }
}

void StridedToFloat(ElemType src_type, const void* src, int64_t stride, float* dst, int64_t n,
                    float scale) {
  for (int64_t i = 0; i < n; ++i) dst[i] = scale * LoadAsFloat(src_type, src, i * stride);
}

const float* AsFloat(const void* data, int64_t count, ElemType type,
                     std::vector<float>& widened) {
  if (type == ElemType::kFloat) return static_cast<const float*>(data);
  widened.resize(static_cast<size_t>(count));
  ToFloat(type, data, widened.data(), count);
  return widened.data();
}

}  // namespace icl::cpu
