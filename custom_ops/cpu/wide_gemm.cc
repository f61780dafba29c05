#include "cpu/wide_gemm.h"

#include <immintrin.h>

#include <algorithm>

#include "cpu/convert.h"
#include "cpu/isa.h"
#include "cpu/prefetch.h"
#include "cpu/scratch.h"

// GCC 12 flags the deliberately undefined lanes inside its own AVX-512 intrinsics
// (_mm512_undefined_ps) as uninitialised once they are inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define ICL_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

namespace icl::cpu {
namespace {

constexpr int64_t kTileRows = 64;  // rows of A per packed tile: 4 zmm of lanes

int64_t TileWidth(int64_t m, int64_t m0) {
  return std::min(kTileRows, (m - m0 + 15) / 16 * 16);
}

// One A^T tile (Lanes zmm wide) against Rows rows of float W, over all of K; the result
// lands in out[Rows][64] (lanes beyond the tile's width are left untouched).
template <int Lanes, int Rows>
ICL_AVX512 void Micro(const float* at, int64_t k, const float* w, int64_t ldw, float* out,
                      Prefetcher& prefetch) {
  __m512 acc[Rows][Lanes];
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l) acc[r][l] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk, at += Lanes * 16) {
    __m512 a[Lanes];
    for (int l = 0; l < Lanes; ++l) a[l] = _mm512_loadu_ps(at + l * 16);
    prefetch.Step();
    for (int r = 0; r < Rows; ++r) {
      const __m512 b = _mm512_set1_ps(w[r * ldw + kk]);
      for (int l = 0; l < Lanes; ++l) acc[r][l] = _mm512_fmadd_ps(a[l], b, acc[r][l]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int l = 0; l < Lanes; ++l) _mm512_storeu_ps(out + r * kTileRows + l * 16, acc[r][l]);
}

template <int Rows>
ICL_AVX512 void MicroAnyWidth(int64_t width, const float* at, int64_t k, const float* w,
                              int64_t ldw, float* out, Prefetcher& prefetch) {
  switch (width / 16) {
    case 4: return Micro<4, Rows>(at, k, w, ldw, out, prefetch);
    case 3: return Micro<3, Rows>(at, k, w, ldw, out, prefetch);
    case 2: return Micro<2, Rows>(at, k, w, ldw, out, prefetch);
    default: return Micro<1, Rows>(at, k, w, ldw, out, prefetch);
  }
}

// Rows rows of float W against every tile of A; writes y (transposing the tile results).
template <int Rows>
ICL_AVX512 void WRowBlock(const PackedA& a, const float* w, int64_t ldw, float alpha, float* y,
                          int64_t ldy, Prefetcher& prefetch) {
  alignas(64) float out[Rows * kTileRows];
  for (int64_t m0 = 0; m0 < a.m; m0 += kTileRows) {
    const int64_t width = TileWidth(a.m, m0);
    MicroAnyWidth<Rows>(width, a.data.data() + m0 * a.k, a.k, w, ldw, out, prefetch);
    const int64_t valid = std::min(kTileRows, a.m - m0);
    for (int64_t i = 0; i < valid; ++i)
      for (int r = 0; r < Rows; ++r) y[(m0 + i) * ldy + r] = alpha * out[r * kTileRows + i];
  }
}

// Rows of W per micro-tile: Rows x (lanes of the widest A tile) <= 24 accumulators, which
// leaves registers for the A tile and the broadcast (16 x 1 measured better than 24 x 1).
template <int Rows>
ICL_AVX512 void Run(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
                    float alpha, float* y, int64_t ldy) {
  constexpr int kWRows = Rows;
  const int64_t size = SizeOf(w_type);
  const char* w_bytes = static_cast<const char*>(w);
  for (int64_t n = 0; n < rows; n += kWRows) {
    const int block = static_cast<int>(std::min<int64_t>(kWRows, rows - n));
    const float* wf = reinterpret_cast<const float*>(w_bytes + n * ldw * size);
    int64_t ldwf = ldw;
    if (w_type != ElemType::kFloat) {
      // 16-bit W: widen this block's rows once, then reuse them for every tile of A.
      float* buf = ThreadScratch(ScratchSlot::kWeights, static_cast<size_t>(kWRows * a.k));
      for (int r = 0; r < block; ++r)
        ToFloat(w_type, w_bytes + (n + r) * ldw * size, buf + r * a.k, a.k);
      wf = buf;
      ldwf = a.k;
    }
    // The next block of W streams into L2 while this one is multiplied.
    const bool has_next = n + 2 * kWRows <= rows;
    Prefetcher prefetch(has_next ? w_bytes + (n + kWRows) * ldw * size : nullptr,
                        has_next ? ((kWRows - 1) * ldw + a.k) * size : 0,
                        (a.m + kTileRows - 1) / kTileRows * a.k);
    if (block == kWRows) {
      WRowBlock<kWRows>(a, wf, ldwf, alpha, y + n, ldy, prefetch);
    } else {
      for (int r = 0; r < block; ++r)
        WRowBlock<1>(a, wf + r * ldwf, ldwf, alpha, y + n + r, ldy, prefetch);
    }
  }
}

}  // namespace

bool WideGemmAvailable() { return CpuIsa() >= Isa::kAvx512; }

void PackA(const float* a, int64_t m, int64_t k, int64_t lda, PackedA& out) {
  out.m = m;
  out.k = k;
  out.data.assign(static_cast<size_t>((m + kTileRows) * k), 0.0f);
  for (int64_t m0 = 0; m0 < m; m0 += kTileRows) {
    const int64_t width = TileWidth(m, m0);
    const int64_t valid = std::min(kTileRows, m - m0);
    float* tile = out.data.data() + m0 * k;
    for (int64_t i = 0; i < valid; ++i) {
      const float* row = a + (m0 + i) * lda;
      for (int64_t kk = 0; kk < k; ++kk) tile[kk * width + i] = row[kk];
    }
  }
}

void WideGemm(const PackedA& a, const void* w, ElemType w_type, int64_t ldw, int64_t rows,
              float alpha, float* y, int64_t ldy) {
  switch (TileWidth(a.m, 0) / 16) {
    case 1: return Run<16>(a, w, w_type, ldw, rows, alpha, y, ldy);
    case 2: return Run<12>(a, w, w_type, ldw, rows, alpha, y, ldy);
    case 3: return Run<8>(a, w, w_type, ldw, rows, alpha, y, ldy);
    default: return Run<6>(a, w, w_type, ldw, rows, alpha, y, ldy);
  }
}

}  // namespace icl::cpu
