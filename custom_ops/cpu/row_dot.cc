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

}  // namespace icl::cpu
