// The CPUExecutionProvider kernel of IclGatherBlockQuantized(B, indices, scales[, zero_points])
// -> Y (docs/operators.md): rows of a MatMulNBits table, dequantized. The shared front end
// (common/gather_block_quantized_input.h) checks, this kernel dequantizes (cpu/block_quant_rows.h).
#pragma once

#include <memory>

#include "common/gather_block_quantized_input.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

class GatherBlockQuantizedKernel {
 public:
  // Reads and checks the attributes K, bits and block_size.
  static Ort::Status Create(const OrtKernelInfo* info,
                            std::unique_ptr<GatherBlockQuantizedKernel>& out);

  Ort::Status Compute(OrtKernelContext* context);

 private:
  explicit GatherBlockQuantizedKernel(const GatherBlockQuantizedInput& input) : input_(input) {}

  GatherBlockQuantizedInput input_;
};

}  // namespace icl::cpu
