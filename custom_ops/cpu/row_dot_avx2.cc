// RowDot for AVX2 + FMA + F16C (8 floats a vector; 16 ymm: a tile of 3 rows of A x 4 rows of
// W is 12 accumulators, 3 vectors of A and one of W; 2 rows of A x 6, one row x 8, four rows
// x 2).
#include <immintrin.h>

#include "cpu/prefetch.h"
#include "cpu/row_dot.h"

#define ICL_TARGET __attribute__((target("avx2,fma,f16c")))
#define ICL_ISA_NS avx2

namespace icl::cpu::avx2 {

struct Simd {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kMaxRows = 3;
  // Measured (K = N = 768, W in L3, one core, us, loaded machine): 3 rows as 3 x 4 46 (as
  // 2 x 6 + 1 x 6: 65); 6 rows 93 (as 2 x 6 three times: 104); 8 rows 127 (133).
  // Four rows of A run as one tile of 4 x 2 (8 accumulators; 4 x 3 needs 17 ymm, and GCC
  // spilled an accumulator) where W has at most kCachedTileMaxWBytes bytes and K is at most
  // kCachedTileMaxK, else as two tiles of 2 x 6. The 2 x 6 tiles are bound by their 8 loads
  // per 12 FMAs (the second tile reads the block of W, 18 KB at K = 768, from L1): in the
  // kernel alone (K = N = 768, W in L3, one core, thread CPU time, minimum of 300 alternated
  // runs, loaded machine) they took 57 us against 52 us for 4 x 2 with W 64-byte aligned
  // (63-66 against 48-54 us with W 4 or 16 bytes off). In ORT 4 x 2 was slower with a larger
  // W although the kernel alone was not (bench_matmul, 4 rows, loaded machine, 4 x 2's time
  // against 2 x 6 + 2 x 6, medians (p10-p90), one / two threads): K = 768, N = 3072 (9.4 MB)
  // 1.05 (0.97-1.26) / 1.00 and 1.10 (0.95-1.23) / 1.30 (1.19-1.43), as in an earlier
  // measurement 1.23 (1.03-1.30) at one thread, and N = 32000 1.11 (1.06-1.18); K = 3072,
  // N = 768 (the 4 packed rows of A, 48 KB, no longer stay in L1) 1.34 (1.12-1.69) / 1.29.
  // For 8 rows, 4 + 4 against 3 + 3 + 2: 1.11 (1.06-1.16) at N=3072; at K = N = 768 (in ORT,
  // one thread, thread CPU time, 600 alternated runs) 0.99, and 12 rows as 4 + 4 + 4 1.09.
  // With the tiles inlined (row_dot_impl.h), 4 rows as 2 x 6 twice still took 1.11-1.13 the
  // time of 4 x 2 (K = N = 768), and 4 x 2 at K = 3072 with K in blocks of 768 or 512
  // 1.10-1.24 the time of 2 x 6 twice.
  static constexpr int kCachedTileRows = 4;
  static constexpr int64_t kCachedTileMaxK = 1024;
  static constexpr int64_t kCachedTileMaxWBytes = int64_t{4} << 20;
  // One row of A walks W row after row (row_dot_impl.h, SweepInOrder) where W streams from
  // memory, and from 4 MB at K <= 1024 (separate sessions, time / the 1 x 8 tile: 768 x 3072
  // 0.88-0.90; 3072 x 768: 1.2-1.3).
  static bool OneRowInOrder(int64_t w_bytes, int64_t k) {
    return StreamsFromMemory(w_bytes) || (w_bytes >= (int64_t{4} << 20) && k <= 1024);
  }
  static constexpr int TileCols(int rows) {
    return rows == 1 ? 8 : rows == 2 ? 6 : rows == 3 ? 4 : 2;
  }
  ICL_TARGET static V Pinned(V v) {
    asm("" : "+x"(v));
    return v;
  }
  ICL_TARGET static V Zero() { return _mm256_setzero_ps(); }
  ICL_TARGET static V LoadA(const float* p) { return Pinned(_mm256_loadu_ps(p)); }
  ICL_TARGET static V LoadW(const float* p) { return _mm256_loadu_ps(p); }
  ICL_TARGET static V LoadW(const Ort::Float16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  ICL_TARGET static V LoadW(const Ort::BFloat16_t* p) {
    const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));
  }
  ICL_TARGET static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  ICL_TARGET static float Sum(V v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
  }
  ICL_TARGET static void Sum4(V a, V b, V c, V d, float* out) {
    const V ab = _mm256_hadd_ps(a, b);
    const V cd = _mm256_hadd_ps(c, d);
    const V abcd = _mm256_hadd_ps(ab, cd);  // per 128-bit half: a, b, c, d partial sums
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
};

}  // namespace icl::cpu::avx2

#include "cpu/row_dot_impl.h"

namespace icl::cpu {

void RowDotAvx2(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  avx2::Dispatch(p, n_begin, n_end);
}

void RowDotPackAvx2(const RowDotProblem& p, float* out) { avx2::Pack(p, out); }

int64_t RowDotWidthAvx2() { return avx2::Simd::kWidth; }

}  // namespace icl::cpu
