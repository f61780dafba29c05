// The custom op of one type combination of a kernel class, for any backend, on ORT's
// Ort::CustomOpBase in its status-returning form (CreateKernelV2 / KernelComputeV2).
//
// Compared with onnxruntime_lite_custom_op.h this gives each input its own characteristic
// (the lite API makes every typed input optional, which ORT then merges into the schema) and
// reports every failure, at kernel creation too, as an OrtStatus: nothing throws across the
// C ABI.
#pragma once

#include <exception>
#include <memory>
#include <type_traits>
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

// What ORT calls on a created kernel: Kernel's Compute, exceptions turned into a status.
template <typename Kernel>
struct KernelAdapter {
  std::unique_ptr<Kernel> kernel;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept {
    return StatusOf([&] { return kernel->Compute(context); });
  }
};

// Whether `Kernel` declares where its inputs live (static OrtMemType InputMemoryType(size_t)).
template <typename Kernel, typename = void>
struct HasInputMemoryType : std::false_type {};
template <typename Kernel>
struct HasInputMemoryType<Kernel, std::void_t<decltype(Kernel::InputMemoryType(size_t{}))>>
    : std::true_type {};

// The custom op of one type combination of `Kernel`, which provides
//   static Ort::Status Create(const OrtKernelInfo* info, std::unique_ptr<Kernel>& out);
//   Ort::Status Compute(OrtKernelContext* context);
// One Kernel class serves every type combination: it reads the element types at run time.
template <typename Kernel>
class KernelOp
    : public Ort::CustomOpBase<KernelOp<Kernel>, KernelAdapter<Kernel>, /*WithStatus=*/true> {
 public:
  KernelOp(const OpSignature& signature, const char* provider,
           std::vector<ONNXTensorElementDataType> input_types,
           std::vector<ONNXTensorElementDataType> output_types)
      : signature_(signature),
        provider_(provider),
        input_types_(std::move(input_types)),
        output_types_(std::move(output_types)) {
    this->end_ver_ = 1;  // opset 1 of ai.icl only
  }

  const char* GetName() const { return signature_.name; }
  const char* GetExecutionProviderType() const { return provider_; }
  size_t GetInputTypeCount() const { return input_types_.size(); }
  ONNXTensorElementDataType GetInputType(size_t i) const { return input_types_[i]; }
  size_t GetOutputTypeCount() const { return output_types_.size(); }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return output_types_[i]; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return signature_.inputs[i];
  }
  OrtCustomOpInputOutputCharacteristic GetOutputCharacteristic(size_t i) const {
    return signature_.outputs[i];
  }
  // Variadic outputs (IclGather's Y) are one tensor of any type; no variadic inputs.
  bool GetVariadicInputHomogeneity() const { return false; }
  bool GetVariadicOutputHomogeneity() const { return false; }
  // Where input `i` lives: Kernel::InputMemoryType(i) when the kernel says (a host input of
  // a CUDA kernel), else the provider's device.
  OrtMemType GetInputMemoryType(size_t i) const {
    if constexpr (HasInputMemoryType<Kernel>::value) {
      return Kernel::InputMemoryType(i);
    } else {
      return OrtMemTypeDefault;
    }
  }

  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info,
                              void** kernel) const noexcept {
    *kernel = nullptr;
    return StatusOf([&] {
      auto adapter = std::make_unique<KernelAdapter<Kernel>>();
      Ort::Status status = Kernel::Create(info, adapter->kernel);
      if (status.IsOK()) *kernel = adapter.release();
      return status;
    });
  }

 private:
  const OpSignature& signature_;
  const char* provider_;
  std::vector<ONNXTensorElementDataType> input_types_;
  std::vector<ONNXTensorElementDataType> output_types_;
};

}  // namespace icl
