// The 8 x 8 float transpose in AVX2 registers that WideGemm's A packing and its AVX2 stores of
// Y share.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace icl::cpu {

// dst[j * ldd + i] = src[i * lds + j] for i < rows (<= 8), j < 8, times alpha where Scale; rows
// beyond `rows` are zero. Unpack, shuffle, then swap of 128-bit halves.
template <bool Scale>
__attribute__((target("avx2"), always_inline)) inline void Transpose8(
    const float* src, int64_t lds, int64_t rows, float* dst, int64_t ldd, float alpha = 1.0f) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i)
    r[i] = i < rows ? _mm256_loadu_ps(src + i * lds) : _mm256_setzero_ps();
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  const __m256 s = _mm256_set1_ps(alpha);
  for (int j = 0; j < 4; ++j) {
    __m256 lo = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
    __m256 hi = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
    if constexpr (Scale) {
      lo = _mm256_mul_ps(s, lo);
      hi = _mm256_mul_ps(s, hi);
    }
    _mm256_storeu_ps(dst + j * ldd, lo);
    _mm256_storeu_ps(dst + (j + 4) * ldd, hi);
  }
}

}  // namespace icl::cpu
