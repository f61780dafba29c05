// The CUDA kernels' Create and input front end, reachable without a GPU: RegisterCustomOps of the
// harness library registers IclMatMul, IclGather and IclGatherBlockQuantized (domain ai.icl) on
// the CPU provider, with the real ops' signatures and type lists (common/register_kernels.h).
// Each op creates the CUDA kernel with its own Create (cuda/matmul.h, cuda/gather.h,
// cuda/gather_block_quantized.h) on the node's real OrtKernelInfo, and at run reads the inputs
// through that kernel's front end (common/*_input.h, with the CUDA backend's capabilities) in
// place of its Compute, stopping before any launch.
// A session over a node therefore fails at creation exactly when the CUDA kernel would, and a
// run fails with the CUDA kernel's message exactly when its front end refuses the inputs; nothing
// touches a CUDA API, so this runs on machines without a GPU or driver. Tests only; a run that
// passes every check answers ORT_NOT_IMPLEMENTED.
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

#include "common/kernel_op.h"
#include "common/register_kernels.h"
#include "cuda/gather.h"
#include "cuda/gather_block_quantized.h"
#include "cuda/matmul.h"
#include "icl_ops.h"

namespace {

// Creates a CUDA kernel, and at run reads the inputs through its front end, never launching.
template <typename CudaKernel>
class InputProbe {
 public:
  static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<InputProbe>& out) {
    std::unique_ptr<CudaKernel> kernel;
    Ort::Status status = CudaKernel::Create(info, kernel);
    if (status.IsOK()) out = std::make_unique<InputProbe>(std::move(kernel));
    return status;
  }

  explicit InputProbe(std::unique_ptr<CudaKernel> kernel) : kernel_(std::move(kernel)) {}

  Ort::Status Compute(OrtKernelContext* context) {
    typename std::decay_t<decltype(kernel_->input())>::Call call;
    if (Ort::Status status = kernel_->input().Read(context, call); !status.IsOK()) return status;
    return Ort::Status("the CUDA create probe only creates kernels and reads their inputs",
                       ORT_NOT_IMPLEMENTED);
  }

 private:
  std::unique_ptr<CudaKernel> kernel_;
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
    static std::once_flag once;
    std::call_once(once, [] {
      constexpr const char* kProvider = "CPUExecutionProvider";
      icl::RegisterKernels<InputProbe<icl::cuda::MatMulKernel>,
                           InputProbe<icl::cuda::GatherKernel>>(Domain(), kProvider);
      icl::RegisterGatherBlockQuantized<InputProbe<icl::cuda::GatherBlockQuantizedKernel>>(
          Domain(), kProvider);
    });
    Ort::UnownedSessionOptions(options).Add(Domain());
    return Ort::Status{nullptr};
  });
}
