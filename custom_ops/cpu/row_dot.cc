#include "cpu/row_dot.h"

#include "cpu/isa.h"

namespace icl::cpu {

void RowDot(const RowDotProblem& p, int64_t n_begin, int64_t n_end) {
  switch (CpuIsa()) {
    case Isa::kAvx512: return RowDotAvx512(p, n_begin, n_end);
    case Isa::kAvx2: return RowDotAvx2(p, n_begin, n_end);
    default: return RowDotScalar(p, n_begin, n_end);
  }
}

int64_t RowDotPackedSize(int64_t rows, int64_t k) {
  if (rows <= 1) return 0;
  int64_t width = 1;
  switch (CpuIsa()) {
    case Isa::kAvx512: width = RowDotWidthAvx512(); break;
    case Isa::kAvx2: width = RowDotWidthAvx2(); break;
    default: width = RowDotWidthScalar(); break;
  }
  return rows * (k / width * width);  // rows * k fits (A's element count)
}

void RowDotPack(const RowDotProblem& p, float* out) {
  if (p.rows <= 1) return;
  switch (CpuIsa()) {
    case Isa::kAvx512: return RowDotPackAvx512(p, out);
    case Isa::kAvx2: return RowDotPackAvx2(p, out);
    default: return RowDotPackScalar(p, out);
  }
}

}  // namespace icl::cpu
