// Registers the CPU kernels: one custom op per type combination, all under the two op names.
// ORT merges same-named ops into one schema and picks the kernel whose types match the node.
#include <memory>
#include <vector>

#include "common/kernel_op.h"
#include "common/op_signatures.h"
#include "cpu/gather_kernel.h"
#include "cpu/matmul_kernel.h"
#include "icl_ops.h"

namespace icl::cpu {
namespace {

constexpr const char* kProvider = "CPUExecutionProvider";
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
  // IclMatMul: A and bias share a type T, which Y has too; W may be any of the three.
  for (auto t : kFloatTypes) {
    for (auto tw : kFloatTypes) {
      ops.push_back(std::make_unique<KernelOp<MatMulKernel>>(
          MatMulSignature(), kProvider, std::vector{t, tw, t}, std::vector{t}));
    }
  }
  // IclGather: Y is left untyped (see GatherSignature); the kernel checks it at creation.
  for (auto tw : kFloatTypes) {
    for (auto ti : kIndexTypes) {
      ops.push_back(std::make_unique<KernelOp<GatherKernel>>(
          GatherSignature(), kProvider, std::vector{tw, ti},
          std::vector{ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED}));
    }
  }
  for (auto& op : ops) domain.Add(op.get());
}

}  // namespace icl::cpu
