#include "cpu/panel_gemm.h"

#include <immintrin.h>

#include <algorithm>

#include "cpu/isa.h"

// GCC 12 flags the deliberately undefined lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_ps) as uninitialised once they are inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define ICL_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

namespace icl::cpu {
namespace {

constexpr int kRows = 6;  // rows of A per tile: 6 x 4 lanes = 24 accumulators

ICL_AVX512 inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
ICL_AVX512 inline __m512 Load16(const Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
ICL_AVX512 inline __m512 Load16(const BFloat16* p) {
  const __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
}

// Rows rows of A times a panel of Lanes x 16 columns of W, over all of K. `next`, when not
// null, is the same panel of the next column block: its rows are prefetched into L2 as the
// loop walks K (W's rows are far apart, so the hardware prefetcher does not follow).
template <int Rows, int Lanes, typename TW>
ICL_AVX512 void Tile(const float* a, int64_t lda, int64_t k, const TW* w, int64_t ldw,
                     const TW* next, float alpha, float* y, int64_t ldy) {
  __m512 acc[Rows][Lanes];
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l) acc[r][l] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    __m512 wv[Lanes];
    for (int l = 0; l < Lanes; ++l) wv[l] = Load16(w + kk * ldw + l * 16);
    if (next != nullptr) {
      const char* line = reinterpret_cast<const char*>(next + kk * ldw);
      for (int64_t b = 0; b < Lanes * 16 * int64_t{sizeof(TW)}; b += 64)
        __builtin_prefetch(line + b, 0, 2);
    }
    for (int r = 0; r < Rows; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + kk]);
      for (int l = 0; l < Lanes; ++l) acc[r][l] = _mm512_fmadd_ps(av, wv[l], acc[r][l]);
    }
  }
  const __m512 s = _mm512_set1_ps(alpha);
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l)
      _mm512_storeu_ps(y + r * ldy + l * 16, _mm512_mul_ps(acc[r][l], s));
}

// All rows of A against one panel of Lanes x 16 columns.
template <int Lanes, typename TW>
ICL_AVX512 void Panel(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                      int64_t ldw, const TW* next, float alpha, float* y, int64_t ldy) {
  int64_t r = 0;
  for (; r + kRows <= m; r += kRows, next = nullptr)
    Tile<kRows, Lanes>(a + r * lda, lda, k, w, ldw, next, alpha, y + r * ldy, ldy);
  const float* ar = a + r * lda;
  float* yr = y + r * ldy;
  switch (m - r) {
    case 1: return Tile<1, Lanes>(ar, lda, k, w, ldw, next, alpha, yr, ldy);
    case 2: return Tile<2, Lanes>(ar, lda, k, w, ldw, next, alpha, yr, ldy);
    case 3: return Tile<3, Lanes>(ar, lda, k, w, ldw, next, alpha, yr, ldy);
    case 4: return Tile<4, Lanes>(ar, lda, k, w, ldw, next, alpha, yr, ldy);
    case 5: return Tile<5, Lanes>(ar, lda, k, w, ldw, next, alpha, yr, ldy);
    default: return;
  }
}

template <typename TW>
ICL_AVX512 void Run(const float* a, int64_t lda, int64_t m, int64_t k, const TW* w,
                    int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) {
    const TW* next = j + 128 <= n ? w + j + 64 : nullptr;
    Panel<4>(a, lda, m, k, w + j, ldw, next, alpha, y + j, ldy);
  }
  for (; j + 16 <= n; j += 16)
    Panel<1, TW>(a, lda, m, k, w + j, ldw, nullptr, alpha, y + j, ldy);
  // Fewer than 16 columns left: plain loops.
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t jj = j; jj < n; ++jj) {
      float sum = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) sum += a[i * lda + kk] * ToFloat(w[kk * ldw + jj]);
      y[i * ldy + jj] = alpha * sum;
    }
  }
}

}  // namespace

bool PanelGemmAvailable() { return CpuIsa() >= Isa::kAvx512; }

void PanelGemm(const float* a, int64_t lda, int64_t m, int64_t k, const void* w,
               ElemType w_type, int64_t ldw, int64_t n, float alpha, float* y, int64_t ldy) {
  switch (w_type) {
    case ElemType::kFloat:
      return Run(a, lda, m, k, static_cast<const float*>(w), ldw, n, alpha, y, ldy);
    case ElemType::kFloat16:
      return Run(a, lda, m, k, static_cast<const Half*>(w), ldw, n, alpha, y, ldy);
    case ElemType::kBFloat16:
      return Run(a, lda, m, k, static_cast<const BFloat16*>(w), ldw, n, alpha, y, ldy);
  }
}

}  // namespace icl::cpu
