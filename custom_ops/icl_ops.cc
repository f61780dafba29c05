// The op library's one entry point: registers the ai.icl domain's kernels with ONNX Runtime.
#include "icl_ops.h"

#include <mutex>

#include "common/kernel_op.h"
#include "onnxruntime_cxx_api.h"

namespace {

// The domain outlives every session that uses it: ORT keeps a pointer to it.
Ort::CustomOpDomain& Domain() {
  static Ort::CustomOpDomain* domain = new Ort::CustomOpDomain(icl::kDomain);
  return *domain;
}

}  // namespace

// Built against C API 21, which every later ONNX Runtime still serves. Never throws: failures
// come back as an OrtStatus.
extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {  // an ONNX Runtime older than 1.21: report through its first API
    return api_base->GetApi(1)->CreateStatus(ORT_FAIL, "libicl_ops needs ONNX Runtime >= 1.21");
  }
  Ort::InitApi(api);
  return icl::StatusOf([&] {
    static std::once_flag once;
    std::call_once(once, [] {
      icl::cpu::RegisterOps(Domain());
      icl::cuda::RegisterOps(Domain());
    });
    Ort::UnownedSessionOptions(options).Add(Domain());
    return Ort::Status{nullptr};
  });
}
