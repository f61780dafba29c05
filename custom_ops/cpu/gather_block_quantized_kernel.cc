#include "cpu/gather_block_quantized_kernel.h"

#include <algorithm>
#include <vector>

#include "common/elem_type.h"
#include "cpu/backend.h"
#include "cpu/block_quant_rows.h"
#include "cpu/parallel.h"

namespace icl::cpu {
namespace {

// Output elements per thread-pool task: small gathers run inline.
constexpr int64_t kElementsPerTask = 1 << 15;

}  // namespace

Ort::Status GatherBlockQuantizedKernel::Create(const OrtKernelInfo* info,
                                               std::unique_ptr<GatherBlockQuantizedKernel>& out) {
  GatherBlockQuantizedInput input;
  if (Ort::Status status = GatherBlockQuantizedInput::Create(info, kBackend, input);
      !status.IsOK()) {
    return status;
  }
  out.reset(new GatherBlockQuantizedKernel(input));
  return Ort::Status{nullptr};
}

Ort::Status GatherBlockQuantizedKernel::Compute(OrtKernelContext* context) {
  GatherBlockQuantizedCall call;  // every index checked, Y allocated
  if (Ort::Status status = input_.Read(context, call); !status.IsOK()) return status;
  BlockQuantTable table;
  table.geometry = call.geometry;
  table.type = call.type;
  table.b = call.b;
  table.scales = call.scales;
  table.zero_points = call.zero_points;
  const std::vector<int64_t>& rows = call.rows;
  char* y_data = static_cast<char*>(call.y);
  const int64_t k = call.geometry.k, count = static_cast<int64_t>(rows.size());
  const int64_t row_bytes = k * SizeOf(call.type);  // Y's byte size fits int64 (checked)
  const int64_t rows_per_task = std::max<int64_t>(1, kElementsPerTask / k);
  return ParallelFor(context, ChunkCount(count, rows_per_task), [&](int64_t t) {
    const int64_t end = std::min(count, (t + 1) * rows_per_task);
    for (int64_t i = t * rows_per_task; i < end; ++i) {
      DequantizeRow(table, rows[static_cast<size_t>(i)], y_data + i * row_bytes);
    }
  });
}

}  // namespace icl::cpu
