// The CUDA kernels' Create, reachable without a GPU: RegisterCustomOps of the harness library
// registers IclMatMul, IclGather and IclGatherBlockQuantized (domain ai.icl) on the CPU
// provider, each op running the CUDA kernel's own Create (cuda/matmul.h, cuda/gather.h,
// cuda/gather_block_quantized.h) with the node's real OrtKernelInfo.
// Creating a session over a node therefore fails exactly when the CUDA kernel would refuse
// it at session creation; Create touches no CUDA API, so this runs on machines without a GPU
// or driver. Tests only; the probe kernels never compute.
#include <memory>

#include "common/kernel_op.h"
#include "common/op_signatures.h"
#include "cuda/gather.h"
#include "cuda/gather_block_quantized.h"
#include "cuda/matmul.h"
#include "icl_ops.h"

namespace {

// Creates (then drops) a CUDA kernel, and refuses to run.
template <typename CudaKernel>
class CreateProbe {
 public:
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<CreateProbe>& out) {
    std::unique_ptr<CudaKernel> kernel;
    Ort::Status status = CudaKernel::Create(info, kernel);
    if (status.IsOK()) out = std::make_unique<CreateProbe>();
    return status;
  }

  Ort::Status Compute(OrtKernelContext*) {
    return Ort::Status("the CUDA create probe only creates kernels", ORT_NOT_IMPLEMENTED);
  }
};

Ort::CustomOpDomain& Domain() {
  static auto* domain = new Ort::CustomOpDomain(icl::kDomain);
  return *domain;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  return icl::StatusOf([&] {
    using Float = std::vector<ONNXTensorElementDataType>;
    constexpr auto kF = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    static auto* matmul = new icl::KernelOp<CreateProbe<icl::cuda::MatMulKernel>>(
        icl::MatMulSignature(), "CPUExecutionProvider", Float{kF, kF, kF}, Float{kF});
    static auto* gather = new icl::KernelOp<CreateProbe<icl::cuda::GatherKernel>>(
        icl::GatherSignature(), "CPUExecutionProvider",
        Float{kF, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64},
        Float{ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED});
    constexpr auto kU8 = ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    static auto* block_gather =
        new icl::KernelOp<CreateProbe<icl::cuda::GatherBlockQuantizedKernel>>(
            icl::GatherBlockQuantizedSignature(), "CPUExecutionProvider",
            Float{kU8, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, kF, kU8}, Float{kF});
    static const bool added = [] {
      Domain().Add(matmul);
      Domain().Add(gather);
      Domain().Add(block_gather);
      return true;
    }();
    (void)added;
    Ort::UnownedSessionOptions(options).Add(Domain());
    return Ort::Status{nullptr};
  });
}
