// The low-rank term of the ICL views (docs/operators.md), shared by every backend:
// the operator reads view(W) + delta, where delta[P, Q] is given by two factor inputs U, V:
//   delta_transpose = 0: delta = U @ V,    U [P, r], V [r, Q];
//   delta_transpose = 1: delta = (U @ V)^T, U [Q, r], V [r, P].
// P and Q are view(W)'s rows and columns. delta is never materialised: IclMatMul computes
// (A @ L) @ R, IclGather adds L[row, :] @ R, with L[p, j] and R[j, q] the factors seen from
// delta's side (L = U, R = V; or, transposed, L = V^T, R = U^T).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace icl {

// Checks the factor shapes against view(W) [p, q]; sets `rank` (0 when both are absent).
// Returns "" when they fit, else what is wrong.
inline std::string CheckLowRankShapes(bool has_u, const std::vector<int64_t>& u_shape, bool has_v,
                                      const std::vector<int64_t>& v_shape, int64_t p, int64_t q,
                                      bool transposed, int64_t& rank) {
  rank = 0;
  if (!has_u && !has_v) return {};
  if (has_u != has_v) return "U and V must be given together";
  if (u_shape.size() != 2 || v_shape.size() != 2) return "U and V must be 2-D";
  const int64_t u_rows = transposed ? q : p, v_cols = transposed ? p : q;
  if (u_shape[0] != u_rows || v_shape[1] != v_cols || u_shape[1] != v_shape[0]) {
    return "U [" + std::to_string(u_shape[0]) + ", " + std::to_string(u_shape[1]) + "] and V [" +
           std::to_string(v_shape[0]) + ", " + std::to_string(v_shape[1]) + "] do not make a " +
           (transposed ? "transposed " : "") + "delta of view(W) [" + std::to_string(p) + ", " +
           std::to_string(q) + "]";
  }
  rank = u_shape[1];
  return {};
}

}  // namespace icl
