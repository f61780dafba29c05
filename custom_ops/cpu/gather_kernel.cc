#include "cpu/gather_kernel.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/backend.h"
#include "cpu/convert.h"
#include "cpu/low_rank.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"

namespace icl::cpu {
namespace {

// Output elements per thread-pool task: small gathers run inline.
constexpr int64_t kElementsPerTask = 1 << 16;

}  // namespace

Ort::Status GatherKernel::Create(const OrtKernelInfo* info, std::unique_ptr<GatherKernel>& out) {
  GatherInput input;
  if (Ort::Status status = GatherInput::Create(info, kBackend, input); !status.IsOK()) {
    return status;
  }
  out.reset(new GatherKernel(input));
  return Ort::Status{nullptr};
}

Ort::Status GatherKernel::Compute(OrtKernelContext* context) {
  GatherCall call;  // every index checked: the CPU reads them on the host
  if (Ort::Status status = input_.Read(context, call); !status.IsOK()) return status;
  const ViewGeometry& view = call.view;
  const std::vector<int64_t>& rows = call.rows;
  const ElemType w_type = call.w_type, y_type = call.y_type;
  const int64_t count = call.count, h = view.cols;
  if (count == 0 || h == 0) return Ort::Status{nullptr};  // Y is empty
  std::vector<float> u_float, v_float;
  const LowRankTerm delta = ToLowRankTerm(call.u, call.v, w_type, view, call.rank,
                                          call.delta_transposed, u_float, v_float);
  char* y_data = static_cast<char*>(call.y);
  const char* w_data = static_cast<const char*>(call.w);
  const int64_t w_size = SizeOf(w_type), y_size = SizeOf(y_type);
  // A plain copy when the view keeps rows contiguous and changes no value.
  const bool copy_rows =
      !view.transposed && w_type == y_type && call.scale == 1.0f && delta.rank == 0;

  // One row of view(W): contiguous at offset + r * ld, or (transposed) a column of W.
  auto gather_row = [&](int64_t i) {
    const int64_t r = rows[static_cast<size_t>(i)];
    char* dst = y_data + i * h * y_size;
    if (copy_rows) {
      std::memcpy(dst, w_data + (view.offset + r * view.ld) * w_size,
                  static_cast<size_t>(h * w_size));
      return;
    }
    float* row = ThreadScratch(ScratchSlot::kRow, static_cast<size_t>(h));
    if (view.transposed) {
      StridedToFloat(w_type, w_data + (view.offset + r) * w_size, view.ld, row, h, call.scale);
    } else {
      ToFloat(w_type, w_data + (view.offset + r * view.ld) * w_size, row, h, call.scale);
    }
    if (delta.rank > 0) LowRankAddRow(delta, r, row);
    FromFloat(row, y_type, dst, h);
  };
  const int64_t rows_per_task = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(h, 1));
  return ParallelFor(context, ChunkCount(count, rows_per_task), [&](int64_t t) {
    const int64_t end = std::min(count, (t + 1) * rows_per_task);
    for (int64_t i = t * rows_per_task; i < end; ++i) gather_row(i);
  });
}

}  // namespace icl::cpu
