// The CPUExecutionProvider kernel of IclGather(W, indices[, U, V]) -> Y (docs/operators.md):
// the shared front end (common/gather_input.h) checks, this kernel copies and converts rows.
#pragma once

#include <memory>

#include "common/gather_input.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

class GatherKernel {
 public:
  // Reads and checks the attributes, and that Y's declared type is output_dtype (or W's).
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<GatherKernel>& out);

  Ort::Status Compute(OrtKernelContext* context);

 private:
  explicit GatherKernel(const GatherInput& input) : input_(input) {}

  GatherInput input_;
};

}  // namespace icl::cpu
