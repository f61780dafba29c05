// IclGatherBlockQuantized for CUDAExecutionProvider: the same checks as the CPU kernel
// (common/block_quant_io.h), then the gather on ORT's compute stream
// (gather_block_quantized_impl.cuh).
//
// The indices are a CPU input (ORT copies them to host memory when a GPU node produces them):
// the host checks every index and reports a bad one with the CPU kernel's message, with no
// device synchronisation, then copies the row numbers to device scratch.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "common/block_quant_io.h"
#include "cuda/gather_block_quantized_impl.cuh"
#include "cuda/ort_util.h"

namespace icl::cuda {

class GatherBlockQuantizedKernel {
 public:
  static constexpr const char* kOp = "IclGatherBlockQuantized";

  static Ort::Status Create(const OrtKernelInfo* info,
                            std::unique_ptr<GatherBlockQuantizedKernel>& out) {
    BlockQuantAttrs attrs;
    if (std::string problem = ReadBlockQuantAttrs(info, attrs); !problem.empty()) {
      return InvalidArgument(kOp, problem);
    }
    out = std::make_unique<GatherBlockQuantizedKernel>(attrs);
    return Ort::Status(nullptr);
  }

  // Input 1 (indices) lives in host memory; the others on the device.
  static OrtMemType InputMemoryType(size_t index) {
    return index == 1 ? OrtMemTypeCPUInput : OrtMemTypeDefault;
  }

  explicit GatherBlockQuantizedKernel(const BlockQuantAttrs& attrs) : attrs_(attrs) {}

  Ort::Status Compute(OrtKernelContext* context) const {
    Ort::KernelContext ctx(context);
    const Ort::ConstValue b = ctx.GetInput(0);
    const Ort::ConstValue indices = ctx.GetInput(1);
    const Ort::ConstValue scales = ctx.GetInput(2);
    const Ort::ConstValue zero_points =
        ctx.GetInputCount() > 3 ? ctx.GetInput(3) : Ort::ConstValue{};
    BlockGatherProblem p;
    if (!ToElemType(static_cast<int>(scales.GetTensorTypeAndShapeInfo().GetElementType()),
                    p.type)) {
      return InvalidArgument(kOp, "scales must be float32, float16 or bfloat16");
    }
    std::string problem = ResolveBlockQuantInputs(attrs_, b, scales, zero_points, p.geometry);
    if (!problem.empty()) return InvalidArgument(kOp, problem);
    std::vector<int64_t> rows;
    problem = ReadRowIndices(indices, p.geometry.n, rows);
    if (!problem.empty()) return InvalidArgument(kOp, problem);

    std::vector<int64_t> y_shape = indices.GetTensorTypeAndShapeInfo().GetShape();
    y_shape.push_back(p.geometry.k);
    Ort::UnownedValue y = ctx.GetOutput(0, y_shape);
    p.count = static_cast<int64_t>(rows.size());
    if (p.count == 0) return Ort::Status(nullptr);
    p.b = b.GetTensorData<uint8_t>();
    p.scales = scales.GetTensorRawData();
    p.zero_points = zero_points ? zero_points.GetTensorData<uint8_t>() : nullptr;
    p.y = y.GetTensorMutableRawData();

    auto stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    const size_t bytes = rows.size() * sizeof(int64_t);
    DeviceScratch device_rows(ctx, b.GetTensorMemoryInfo(), bytes);
    p.rows = static_cast<const int64_t*>(device_rows.get());
    // From pageable memory: returns once `rows` is staged, so it may go out of scope after.
    cudaError_t e = cudaMemcpyAsync(device_rows.get(), rows.data(), bytes,
                                    cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess) e = LaunchGatherBlockQuantized(p, stream);
    return e == cudaSuccess ? Ort::Status(nullptr) : Failure(kOp, cudaGetErrorString(e));
  }

 private:
  BlockQuantAttrs attrs_;
};

}  // namespace icl::cuda
