// The low-rank term of the ICL views on the CPU (common/low_rank.h), on float32 factors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/view.h"
#include "cpu/element.h"

namespace icl::cpu {

// delta[P, Q] = U @ V (U [P, r], V [r, Q]) or, when `transposed`, (U @ V)^T (U [Q, r], V [r, P]).
struct LowRankTerm {
  const float* u = nullptr;
  const float* v = nullptr;
  int64_t p = 0, q = 0;  // delta's shape: view(W)'s
  int64_t rank = 0;      // 0: no term
  bool transposed = false;
};

// Rows of A (and Y) that one low-rank term covers: `blocks` batch rows of `block_rows` rows each,
// in order, so its i-th row is A's row Row(i). One group of all of A's rows when the term is the
// node's only one; with variant_ids, the batch rows of one variant (rows grouped by variant, as
// Punica's SGMV does, so each variant's factors are read once per call).
struct LowRankRows {
  std::vector<int64_t> blocks;  // batch rows, ascending
  int64_t block_rows = 0;       // rows of A per batch row

  int64_t size() const { return static_cast<int64_t>(blocks.size()) * block_rows; }
  int64_t Row(int64_t i) const { return blocks[i / block_rows] * block_rows + i % block_rows; }
  // Whether the rows are consecutive rows of A (from Row(0)).
  bool Contiguous() const { return blocks.back() - blocks.front() + 1 == int64_t(blocks.size()); }
};

// A low-rank term and the rows of A it applies to.
struct LowRankGroup {
  LowRankTerm term;
  LowRankRows rows;
};

// delta = L @ R with L [P, rank] and R [rank, Q]: L = U and R = V, or, when `transposed`,
// L = V^T and R = U^T. Both products below run on PanelGemm (plain, row-major operands), so
// they use the widest instruction set the CPU has; a transposed factor is copied transposed
// first (rank x P or a rank x nc block: small next to W).

// L row-major [P, rank]: U itself, or V transposed into `buffer`.
const float* LowRankLeftMatrix(const LowRankTerm& f, std::vector<float>& buffer);

// t[i, j] = sum_k a[i, k] * L[k, j] for i < m (a is [m, P] row-major, t is [m, rank]);
// `left` is LowRankLeftMatrix's. Single-threaded: callers split the rows.
void LowRankLeft(const LowRankTerm& f, const float* left, const float* a, int64_t m, float* t);

// out[rows.Row(i), c] += sum_j t[i, j] * R[j, q0 + c] for i < rows.size(), c < nc (out has
// row stride ldo). Uses two of the calling thread's scratch buffers.
void LowRankAddColumns(const LowRankTerm& f, const float* t, const LowRankRows& rows, int64_t q0,
                       int64_t nc, float* out, int64_t ldo);

// out[c] += delta[row, c] for c < Q.
void LowRankAddRow(const LowRankTerm& f, int64_t row, float* out);

// The low-rank term of a checked call (common/matmul_input.h, common/gather_input.h): factors
// `u`, `v` of W's type and rank `rank` for view(W) `view`, 16-bit ones widened into `u_float`,
// `v_float`. Rank 0: no term.
LowRankTerm ToLowRankTerm(const void* u, const void* v, ElemType w_type, const ViewGeometry& view,
                          int64_t rank, bool transposed, std::vector<float>& u_float,
                          std::vector<float>& v_float);

}  // namespace icl::cpu
