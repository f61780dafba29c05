// Registration shared by the backends (and the CUDA harness's create probe): one custom op per
// type combination of each op, all under the op names. ORT merges same-named ops into one schema (across backends too) and
// picks the kernel whose types match the node.
#pragma once

#include <memory>
#include <vector>

#include "common/kernel_op.h"
#include "common/op_signatures.h"

namespace icl {

// Adds a backend's IclMatMul and IclGather kernels for `provider` to `domain`.
template <typename MatMulKernel, typename GatherKernel>
void RegisterKernels(Ort::CustomOpDomain& domain, const char* provider) {
  constexpr ONNXTensorElementDataType kFloatTypes[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
                                                       ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
                                                       ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16};
  constexpr ONNXTensorElementDataType kIndexTypes[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
                                                       ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};
  // The ops live as long as the process: ORT keeps pointers to them in every session.
  static auto* ops = new std::vector<std::unique_ptr<OrtCustomOp>>();
  // IclMatMul: A, bias and Y share a type T; W may be any of the three (a cast view); the
  // low-rank factors U and V have W's type; variant_ids is int64.
  for (auto t : kFloatTypes) {
    for (auto tw : kFloatTypes) {
      ops->push_back(std::make_unique<KernelOp<MatMulKernel>>(
          MatMulSignature(), provider,
          std::vector{t, tw, t, tw, tw, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64}, std::vector{t}));
    }
  }
  // IclGather: U and V have W's type; Y is left untyped (see GatherSignature); the front end
  // (common/gather_input.h) checks it against output_dtype at kernel creation.
  for (auto tw : kFloatTypes) {
    for (auto ti : kIndexTypes) {
      ops->push_back(std::make_unique<KernelOp<GatherKernel>>(
          GatherSignature(), provider, std::vector{tw, ti, tw, tw},
          std::vector{ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED}));
    }
  }
  for (auto& op : *ops) domain.Add(op.get());
}

// Adds a backend's IclGatherBlockQuantized kernels for `provider` to `domain`: B and
// zero_points uint8, scales and Y one float type, indices int32 or int64.
template <typename Kernel>
void RegisterGatherBlockQuantized(Ort::CustomOpDomain& domain, const char* provider) {
  static auto* ops = new std::vector<std::unique_ptr<OrtCustomOp>>();
  for (auto t : {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
                 ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16}) {
    for (auto ti : {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64}) {
      ops->push_back(std::make_unique<KernelOp<Kernel>>(
          GatherBlockQuantizedSignature(), provider,
          std::vector{ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, ti, t,
                      ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8},
          std::vector{t}));
    }
  }
  for (auto& op : *ops) domain.Add(op.get());
}

}  // namespace icl
