// The CPUExecutionProvider kernel of IclMatMul(A, W[, bias]) -> Y (docs/operators.md).
#pragma once

#include <memory>

#include "common/view.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

class MatMulKernel {
 public:
  // Reads and checks the view attributes; a bad attribute is an error status here, at
  // session creation, rather than at the first run.
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<MatMulKernel>& out);

  Ort::Status Compute(OrtKernelContext* context);

 private:
  explicit MatMulKernel(const ViewAttrs& attrs) : attrs_(attrs) {}

  ViewAttrs attrs_;
};

}  // namespace icl::cpu
