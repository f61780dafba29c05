// RowDot in portable C++ (one float a "vector"), for CPUs without AVX2/FMA/F16C.
#include "cpu/row_dot.h"

#define ICL_TARGET
#define ICL_ISA_NS scalar

namespace icl::cpu::scalar {

struct Simd {
  using V = float;
  static constexpr int kWidth = 1;
  static constexpr int kMaxRows = 4;
  static constexpr int kCachedTileRows = 0;
  static constexpr int64_t kCachedTileMaxK = 0;
  static constexpr int64_t kCachedTileMaxWBytes = 0;
  static constexpr bool OneRowInOrder(int64_t, int64_t) { return false; }
  static constexpr int TileCols(int) { return 4; }
  static V Pinned(V v) { return v; }
  static V Zero() { return 0.0f; }
  static V LoadA(const float* p) { return *p; }
  template <typename T>
  static V LoadW(const T* p) { return ToFloat(*p); }
  static V Fma(V a, V b, V acc) { return acc + a * b; }
  static float Sum(V v) { return v; }
  static void Sum4(V a, V b, V c, V d, float* out) {
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
  }
};

}  // namespace icl::cpu::scalar

#include "cpu/row_dot_impl.h"

namespace icl::cpu {

void RowDotScalar(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  scalar::Dispatch(p, n_begin, n_end);
}

void RowDotPackScalar(const RowDotProblem& p, float* out) { scalar::Pack(p, out); }

int64_t RowDotWidthScalar() { return scalar::Simd::kWidth; }

}  // namespace icl::cpu
