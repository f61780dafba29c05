// The op library's one entry point: registers the ai.icl domain's kernels with ONNX Runtime.
#include "icl_ops.h"

#include <mutex>

#include "onnxruntime_cxx_api.h"

namespace {

// The domain outlives every session that uses it: ORT keeps a pointer to it.
Ort::CustomOpDomain& Domain() {
  static Ort::CustomOpDomain* domain = new Ort::CustomOpDomain(icl::kDomain);
  return *domain;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
  static std::once_flag once;
  OrtStatus* status = nullptr;
  try {
    std::call_once(once, [] {
      icl::cpu::RegisterOps(Domain());
      icl::cuda::RegisterOps(Domain());
    });
    Ort::UnownedSessionOptions session_options(options);
    session_options.Add(Domain());
  } catch (const Ort::Exception& e) {
    status = Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    status = Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
  return status;
}
