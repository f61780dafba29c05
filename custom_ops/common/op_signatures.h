// The ONNX-facing signatures of the ICL operators, shared by every backend.
//
// ORT merges all custom ops of one name in a domain (CPU and CUDA kernels, every type
// combination) into a single schema and refuses the registration when their input/output
// counts or characteristics differ, so every backend builds its ops from these signatures.
#pragma once

#include <cstddef>
#include <vector>

#include "onnxruntime_c_api.h"

namespace icl {

// Characteristics of one op's inputs and outputs, as OrtCustomOp reports them.
struct OpSignature {
  const char* name;
  std::vector<OrtCustomOpInputOutputCharacteristic> inputs;
  std::vector<OrtCustomOpInputOutputCharacteristic> outputs;
};

// IclMatMul(A, W[, bias][, U, V][, variant_ids]) -> Y. Y's type is A's, so ORT infers it from
// the kernel whose type constraints match A and W. U and V are the factors of a low-rank term
// (common/low_rank.h); with variant_ids (int64 [B]) they are stacked per variant, and each batch
// row of A reads its own pair.
inline const OpSignature& MatMulSignature() {
  static const OpSignature s{"IclMatMul",
                             {INPUT_OUTPUT_REQUIRED, INPUT_OUTPUT_REQUIRED, INPUT_OUTPUT_OPTIONAL,
                              INPUT_OUTPUT_OPTIONAL, INPUT_OUTPUT_OPTIONAL, INPUT_OUTPUT_OPTIONAL},
                             {INPUT_OUTPUT_REQUIRED}};
  return s;
}

// IclGather(W, indices[, U, V]) -> Y (U, V: a low-rank term, common/low_rank.h). Y's type
// comes from the attribute `output_dtype`, which ORT's custom-op type inference cannot read: it
// only propagates types chosen by the inputs. A single, non-homogeneous variadic output is the
// one form ORT leaves untyped, so Y takes the type the model declares for it (graph output or
// value_info; icl_onnx.schemas' shape inference writes it). The input front end
// (common/gather_input.h) checks, at kernel creation, that the declared type is `output_dtype`'s.
inline const OpSignature& GatherSignature() {
  static const OpSignature s{"IclGather",
                             {INPUT_OUTPUT_REQUIRED, INPUT_OUTPUT_REQUIRED,
                              INPUT_OUTPUT_OPTIONAL, INPUT_OUTPUT_OPTIONAL},
                             {INPUT_OUTPUT_VARIADIC}};
  return s;
}

// IclGatherBlockQuantized(B, indices, scales[, zero_points]) -> Y. Y's type is the scales'.
inline const OpSignature& GatherBlockQuantizedSignature() {
  static const OpSignature s{
      "IclGatherBlockQuantized",
      {INPUT_OUTPUT_REQUIRED, INPUT_OUTPUT_REQUIRED, INPUT_OUTPUT_REQUIRED, INPUT_OUTPUT_OPTIONAL},
      {INPUT_OUTPUT_REQUIRED}};
  return s;
}

}  // namespace icl
