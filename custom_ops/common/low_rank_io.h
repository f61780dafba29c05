// The low-rank factor inputs as every backend's kernels read them from ONNX Runtime.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/low_rank.h"
#include "onnxruntime_cxx_api.h"

namespace icl {

// Checks the optional factor inputs U and V (null when absent) against view(W) [p, q], as
// CheckLowRankShapes does; sets `rank` (0 without factors).
inline std::string CheckLowRankInputs(const Ort::ConstValue& u, const Ort::ConstValue& v,
                                      int64_t p, int64_t q, bool transposed, int64_t& rank) {
  const bool has_u = u != nullptr, has_v = v != nullptr;
  return CheckLowRankShapes(
      has_u, has_u ? u.GetTensorTypeAndShapeInfo().GetShape() : std::vector<int64_t>{}, has_v,
      has_v ? v.GetTensorTypeAndShapeInfo().GetShape() : std::vector<int64_t>{}, p, q, transposed,
      rank);
}

}  // namespace icl
