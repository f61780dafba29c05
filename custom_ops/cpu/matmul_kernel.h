// The CPUExecutionProvider kernel of IclMatMul(A, W[, bias][, U, V][, variant_ids]) -> Y
// (docs/operators.md): the shared front end (common/matmul_input.h) checks, this kernel
// computes (cpu/matmul.h).
#pragma once

#include <memory>

#include "common/matmul_input.h"
#include "cpu/huge_pages.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

class MatMulKernel {
 public:
  // Reads and checks the view attributes; a bad attribute is an error status here, at
  // session creation, rather than at the first run.
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<MatMulKernel>& out);

  Ort::Status Compute(OrtKernelContext* context);

 private:
  explicit MatMulKernel(const MatMulInput& input) : input_(input) {}

  MatMulInput input_;
  HugePages huge_pages_;  // W collapsed into huge pages (a constant W), cancelled with the kernel
};

}  // namespace icl::cpu
