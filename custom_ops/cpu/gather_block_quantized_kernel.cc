#include "cpu/gather_block_quantized_kernel.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/block_quant_io.h"
#include "cpu/block_quant_rows.h"
#include "common/elem_type.h"
#include "cpu/parallel.h"

namespace icl::cpu {
namespace {

// Output elements per thread-pool task: small gathers run inline.
constexpr int64_t kElementsPerTask = 1 << 15;

Ort::Status Error(const std::string& message) {
  return Ort::Status(("IclGatherBlockQuantized: " + message).c_str(), ORT_INVALID_ARGUMENT);
}

}  // namespace

Ort::Status GatherBlockQuantizedKernel::Create(const OrtKernelInfo* info,
                                               std::unique_ptr<GatherBlockQuantizedKernel>& out) {
  BlockQuantAttrs attrs;
  if (std::string problem = ReadBlockQuantAttrs(info, attrs); !problem.empty()) {
    return Error(problem);
  }
  out.reset(new GatherBlockQuantizedKernel(attrs));
  return Ort::Status{nullptr};
}

Ort::Status GatherBlockQuantizedKernel::Compute(OrtKernelContext* context) {
  Ort::KernelContext ctx(context);
  const Ort::ConstValue b = ctx.GetInput(0);
  const Ort::ConstValue indices = ctx.GetInput(1);
  const Ort::ConstValue scales = ctx.GetInput(2);
  const Ort::ConstValue zero_points = ctx.GetInputCount() > 3 ? ctx.GetInput(3) : Ort::ConstValue{};

  BlockQuantTable table;
  if (!ToElemType(static_cast<int>(scales.GetTensorTypeAndShapeInfo().GetElementType()),
                  table.type)) {
    return Error("scales must be float32, float16 or bfloat16");
  }
  std::string problem = ResolveBlockQuantInputs(attrs_, b, scales, zero_points, table.geometry);
  if (!problem.empty()) return Error(problem);
  table.b = b.GetTensorData<uint8_t>();
  table.scales = scales.GetTensorRawData();
  table.zero_points = zero_points ? zero_points.GetTensorData<uint8_t>() : nullptr;

  // Check every index before writing anything.
  std::vector<int64_t> rows;
  problem = ReadRowIndices(indices, table.geometry.n, rows);
  if (!problem.empty()) return Error(problem);

  std::vector<int64_t> y_shape = indices.GetTensorTypeAndShapeInfo().GetShape();
  const int64_t k = table.geometry.k, count = static_cast<int64_t>(rows.size());
  y_shape.push_back(k);
  Ort::UnownedValue y = ctx.GetOutput(0, y_shape);
  char* y_data = static_cast<char*>(y.GetTensorMutableRawData());
  const int64_t row_bytes = k * SizeOf(table.type);
  const int64_t rows_per_task = std::max<int64_t>(1, kElementsPerTask / k);
  return ParallelFor(context, ChunkCount(count, rows_per_task), [&](int64_t t) {
    const int64_t end = std::min(count, (t + 1) * rows_per_task);
    for (int64_t i = t * rows_per_task; i < end; ++i) {
      DequantizeRow(table, rows[static_cast<size_t>(i)], y_data + i * row_bytes);
    }
  });
}

}  // namespace icl::cpu
