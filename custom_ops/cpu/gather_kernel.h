// The CPUExecutionProvider kernel of IclGather(W, indices) -> Y (docs/operators.md).
#pragma once

#include <memory>

#include "common/view.h"
#include "cpu/element.h"
#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

class GatherKernel {
 public:
  // Reads and checks the attributes, and that Y's declared type is output_dtype (or W's).
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<GatherKernel>& out);

  Ort::Status Compute(OrtKernelContext* context);

 private:
  GatherKernel(const ViewAttrs& attrs, ElemType y_type) : attrs_(attrs), y_type_(y_type) {}

  ViewAttrs attrs_;
  ElemType y_type_;
};

}  // namespace icl::cpu
