// The low-rank term on the CPU. The rank is small (a LoRA's 4..64): the two products run on
// PanelGemm, and a factor is copied (transposed) only when the delta is transposed, rank x P
// for A @ L and rank x (a task's columns) for the second product.
#include "cpu/low_rank.h"

#include "cpu/convert.h"
#include "cpu/panel_gemm.h"
#include "cpu/scratch.h"

namespace icl::cpu {

LowRankTerm ToLowRankTerm(const void* u, const void* v, ElemType w_type, const ViewGeometry& view,
                          int64_t rank, bool transposed, std::vector<float>& u_float,
                          std::vector<float>& v_float) {
  LowRankTerm term;
  if (rank == 0) return term;
  term.p = view.rows;
  term.q = view.cols;
  term.rank = rank;
  term.transposed = transposed;
  // U [p, rank] and V [rank, q], or U [q, rank] and V [rank, p] when transposed.
  term.u = AsFloat(u, (transposed ? term.q : term.p) * rank, w_type, u_float);
  term.v = AsFloat(v, rank * (transposed ? term.p : term.q), w_type, v_float);
  return term;
}

const float* LowRankLeftMatrix(const LowRankTerm& f, std::vector<float>& buffer) {
  if (!f.transposed) return f.u;
  const int64_t r = f.rank, p = f.p;
  buffer.resize(static_cast<size_t>(p * r));
  for (int64_t j = 0; j < r; ++j) {  // V [r, P] -> L [P, r]
    const float* v_row = f.v + j * p;
    for (int64_t k = 0; k < p; ++k) buffer[k * r + j] = v_row[k];
  }
  return buffer.data();
}

void LowRankLeft(const LowRankTerm& f, const float* left, const float* a, int64_t m, float* t) {
  PanelGemm(a, f.p, m, f.p, left, ElemType::kFloat, f.rank, f.rank, 1.0f, t, f.rank);
}

void LowRankAddColumns(const LowRankTerm& f, const float* t, const LowRankRows& rows, int64_t q0,
                       int64_t nc, float* out, int64_t ldo) {
  const int64_t m = rows.size();
  const int64_t r = f.rank;
  const float* right = f.v + q0;  // R[j, q0 + c] = V[j, q0 + c]
  int64_t ld_right = f.q;
  if (f.transposed) {  // R[j, q0 + c] = U[q0 + c, j]: the block is copied transposed
    float* block = ThreadScratch(ScratchSlot::kLowRankRight, static_cast<size_t>(r * nc));
    for (int64_t c = 0; c < nc; ++c) {
      const float* u_row = f.u + (q0 + c) * r;
      for (int64_t j = 0; j < r; ++j) block[j * nc + c] = u_row[j];
    }
    right = block;
    ld_right = nc;
  }
  float* product = ThreadScratch(ScratchSlot::kLowRankOut, static_cast<size_t>(m * nc));
  PanelGemm(t, r, m, r, right, ElemType::kFloat, ld_right, nc, 1.0f, product, nc);
  const bool contiguous = rows.Contiguous();
  for (int64_t i = 0; i < m; ++i) {
    float* row = out + (contiguous ? rows.Row(0) + i : rows.Row(i)) * ldo;
    const float* add = product + i * nc;
    for (int64_t c = 0; c < nc; ++c) row[c] += add[c];
  }
}

void LowRankAddRow(const LowRankTerm& f, int64_t row, float* out) {
  const int64_t r = f.rank;
  if (!f.transposed) {  // delta[row, :] = U[row, :] @ V
    for (int64_t j = 0; j < r; ++j) {
      const float coefficient = f.u[row * r + j];
      const float* v_row = f.v + j * f.q;
      for (int64_t c = 0; c < f.q; ++c) out[c] += coefficient * v_row[c];
    }
    return;
  }
  // delta[row, c] = sum_j U[c, j] * V[j, row]
  for (int64_t c = 0; c < f.q; ++c) {
    const float* u_row = f.u + c * r;
    float sum = 0.0f;
    for (int64_t j = 0; j < r; ++j) sum += u_row[j] * f.v[j * f.p + row];
    out[c] += sum;
  }
}

}  // namespace icl::cpu
