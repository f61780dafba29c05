// An OrtCustomOp built from a kernel class, for any backend.
//
// Compared with onnxruntime_lite_custom_op.h this gives each input its own characteristic
// (the lite API makes every typed input optional, which ORT then merges into the schema) and
// reports every failure, at kernel creation too, as an OrtStatus: nothing throws across the
// C ABI.
#pragma once

#include <exception>
#include <memory>
#include <utility>
#include <vector>

#include "common/op_signatures.h"
#include "onnxruntime_cxx_api.h"

namespace icl {

// Runs `fn` (returning Ort::Status) and turns it, or any exception it throws, into the
// OrtStatus* the C ABI expects (nullptr on success).
template <typename Fn>
OrtStatus* StatusOf(Fn&& fn) noexcept {
  try {
    return fn().release();
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  } catch (...) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, "unknown exception in an ICL kernel");
  }
}

// The custom op of one type combination of `Kernel`, which provides
//   static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<Kernel>& out);
//   Ort::Status Compute(OrtKernelContext* context);
// One Kernel class serves every type combination: it reads the element types at run time.
template <typename Kernel>
class KernelOp : public OrtCustomOp {
 public:
  KernelOp(const OpSignature& signature, const char* provider,
           std::vector<ONNXTensorElementDataType> input_types,
           std::vector<ONNXTensorElementDataType> output_types)
      : OrtCustomOp{},
        signature_(signature),
        provider_(provider),
        input_types_(std::move(input_types)),
        output_types_(std::move(output_types)) {
    version = ORT_API_VERSION;
    GetName = [](const OrtCustomOp* op) { return Self(op).signature_.name; };
    GetExecutionProviderType = [](const OrtCustomOp* op) { return Self(op).provider_; };
    GetInputTypeCount = [](const OrtCustomOp* op) { return Self(op).input_types_.size(); };
    GetInputType = [](const OrtCustomOp* op, size_t i) { return Self(op).input_types_[i]; };
    GetOutputTypeCount = [](const OrtCustomOp* op) { return Self(op).output_types_.size(); };
    GetOutputType = [](const OrtCustomOp* op, size_t i) { return Self(op).output_types_[i]; };
    GetInputCharacteristic = [](const OrtCustomOp* op, size_t i) {
      return Self(op).signature_.inputs[i];
    };
    GetOutputCharacteristic = [](const OrtCustomOp* op, size_t i) {
      return Self(op).signature_.outputs[i];
    };
    GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
    // Variadic outputs (IclGather's Y) are one tensor of any type; no variadic inputs.
    GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
    GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 0; };
    GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
    GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 0; };
    GetStartVersion = [](const OrtCustomOp*) { return 1; };
    GetEndVersion = [](const OrtCustomOp*) { return 1; };
    CreateKernelV2 = [](const OrtCustomOp*, const OrtApi*, const OrtKernelInfo* info,
                        void** kernel) -> OrtStatusPtr {
      *kernel = nullptr;
      return StatusOf([&] {
        std::unique_ptr<Kernel> created;
        Ort::Status status = Kernel::Create(info, created);
        if (status.IsOK()) *kernel = created.release();
        return status;
      });
    };
    KernelComputeV2 = [](void* kernel, OrtKernelContext* context) -> OrtStatusPtr {
      return StatusOf([&] { return static_cast<Kernel*>(kernel)->Compute(context); });
    };
    KernelDestroy = [](void* kernel) { delete static_cast<Kernel*>(kernel); };
  }

 private:
  static const KernelOp& Self(const OrtCustomOp* op) { return *static_cast<const KernelOp*>(op); }

  const OpSignature& signature_;
  const char* provider_;
  std::vector<ONNXTensorElementDataType> input_types_;
  std::vector<ONNXTensorElementDataType> output_types_;
};

}  // namespace icl
