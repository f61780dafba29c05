// The arithmetic of IclMatMul on the CPU, free of tensor bookkeeping:
// Y[m, n] = scale * (A @ view(W))[m, n] + (A @ delta)[m, n] + bias[n], delta a low-rank term,
// which may differ between groups of rows (one per variant, with variant_ids).
#pragma once

#include <cstdint>
#include <vector>

#include "common/view.h"
#include "cpu/element.h"
#include "cpu/low_rank.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

struct MatMulProblem {
  const float* a = nullptr;  // [m, k], float32 (16-bit A is converted beforehand)
  int64_t m = 0;
  int64_t k = 0;
  const void* w = nullptr;  // the stored W
  ElemType w_type = ElemType::kFloat;
  ViewGeometry view;        // view(W) is [k, n]
  float scale = 1.0f;
  const float* bias = nullptr;  // [n] float32, or null
  void* y = nullptr;            // [m, n] of y_type
  ElemType y_type = ElemType::kFloat;
  // The low-rank terms, each with float32 factors of a delta [k, n] and the rows of A it
  // applies to; no row is in two groups. Empty: no term.
  std::vector<LowRankGroup> deltas;
};

// Computes the problem, splitting the N columns of Y over the session's thread pool.
Ort::Status RunMatMul(OrtKernelContext* context, const MatMulProblem& p);

}  // namespace icl::cpu
