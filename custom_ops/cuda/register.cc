// icl::cuda::RegisterOps: the CUDAExecutionProvider kernels of IclMatMul and IclGather, one
// custom op per type combination, built from the signatures the CPU kernels use too
// (common/op_signatures.h) so ORT can merge both backends into one schema.
// Registering touches no CUDA API, so it is harmless in a CPU-only onnxruntime or on a machine
// without a driver: ORT creates these kernels only for nodes placed on the CUDA provider.
#include <memory>
#include <vector>

#include "common/kernel_op.h"
#include "common/op_signatures.h"
#include "cuda/gather.h"
#include "cuda/matmul.h"
#include "icl_ops.h"

namespace icl::cuda {
namespace {

constexpr ONNXTensorElementDataType kFloatTypes[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
                                                     ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
                                                     ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16};
constexpr ONNXTensorElementDataType kIndexTypes[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
                                                     ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};

// The ops live as long as the process: ORT keeps pointers to them in every session.
std::vector<std::unique_ptr<OrtCustomOp>>& Ops() {
  static auto* ops = new std::vector<std::unique_ptr<OrtCustomOp>>();
  return *ops;
}

}  // namespace

void RegisterOps(Ort::CustomOpDomain& domain) {
  auto& ops = Ops();
  // IclMatMul: A, bias and Y share a type T; W may be any of the three (a cast view).
  for (auto t : kFloatTypes) {
    for (auto tw : kFloatTypes) {
      ops.push_back(std::make_unique<KernelOp<MatMulKernel>>(
          MatMulSignature(), kProvider, std::vector{t, tw, t}, std::vector{t}));
    }
  }
  // IclGather: Y is untyped (see GatherSignature); the kernel checks it against output_dtype.
  for (auto tw : kFloatTypes) {
    for (auto ti : kIndexTypes) {
      ops.push_back(std::make_unique<KernelOp<GatherKernel>>(
          GatherSignature(), kProvider, std::vector{tw, ti},
          std::vector{ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED}));
    }
  }
  for (auto& op : ops) domain.Add(op.get());
}

}  // namespace icl::cuda
