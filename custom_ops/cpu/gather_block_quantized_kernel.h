// The CPUExecutionProvider kernel of IclGatherBlockQuantized(B, indices, scales[, zero_points])
// -> Y (docs/operators.md): rows of a MatMulNBits table, dequantized.
#pragma once

#include <memory>

#include "common/block_quant.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

class GatherBlockQuantizedKernel {
 public:
  // Reads and checks the attributes K, bits and block_size.
  static Ort::Status Create(const OrtKernelInfo* info,
                           std::unique_ptr<GatherBlockQuantizedKernel>& out);

  Ort::Status Compute(OrtKernelContext* context);

 private:
  explicit GatherBlockQuantizedKernel(const BlockQuantAttrs& attrs) : attrs_(attrs) {}

  BlockQuantAttrs attrs_;
};

}  // namespace icl::cpu
