// The low-rank term of the ICL views (docs/operators.md), shared by every backend:
// the operator reads view(W) + delta, where delta[P, Q] is given by two factor inputs U, V:
//   delta_transpose = 0: delta = U @ V,    U [P, r], V [r, Q];
//   delta_transpose = 1: delta = (U @ V)^T, U [Q, r], V [r, P].
// P and Q are view(W)'s rows and columns. delta is never materialised: IclMatMul computes
// (A @ L) @ R, IclGather adds L[row, :] @ R, with L[p, j] and R[j, q] the factors seen from
// delta's side (L = U, R = V; or, transposed, L = V^T, R = U^T).
// IclMatMul with variant_ids [B] reads factors stacked per variant, U [NV, ...], V [NV, ...],
// one pair of the shapes above per variant: batch row b takes pair variant_ids[b].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checked_math.h"

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

// Checks factors stacked per variant (IclMatMul's variant_ids): U [NV, ...] and V [NV, ...],
// each [i] a pair that CheckLowRankShapes accepts for view(W) [p, q]. Sets `variants` (NV) and
// `rank`; returns "" when they fit, else what is wrong.
inline std::string CheckStackedLowRankShapes(bool has_u, const std::vector<int64_t>& u_shape,
                                             bool has_v, const std::vector<int64_t>& v_shape,
                                             int64_t p, int64_t q, bool transposed,
                                             int64_t& variants, int64_t& rank) {
  variants = 0;
  rank = 0;
  if (!has_u && !has_v) return "variant_ids needs U and V stacked per variant (3-D), got neither";
  if (has_u != has_v) return "U and V must be given together";
  if (u_shape.size() != 3 || v_shape.size() != 3) {
    return "variant_ids needs U and V stacked per variant (3-D), got U " + ShapeString(u_shape) +
           " and V " + ShapeString(v_shape);
  }
  if (u_shape[0] != v_shape[0]) {
    return "U stacks " + std::to_string(u_shape[0]) + " variants but V stacks " +
           std::to_string(v_shape[0]);
  }
  // The counts bound every factor offset the kernels form (variant * one variant's elements).
  int64_t count = 0;
  if (!ElementCount(u_shape, count) || !ElementCount(v_shape, count)) {
    return "U " + ShapeString(u_shape) + " or V " + ShapeString(v_shape) +
           " has a negative dimension or too many elements";
  }
  std::string error = CheckLowRankShapes(true, {u_shape[1], u_shape[2]}, true,
                                         {v_shape[1], v_shape[2]}, p, q, transposed, rank);
  if (!error.empty()) return "per variant, " + error;
  variants = u_shape[0];
  return {};
}

}  // namespace icl
