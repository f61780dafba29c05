// IclGather kernel (see gather_impl.cuh).
#include <algorithm>

#include "cuda/element.cuh"
#include "cuda/gather_impl.cuh"

namespace icl::cuda {
namespace {

constexpr int kThreads = 256;

// One index per blockIdx.y (grid-stride), its row's columns across threads: writes coalesce, and
// reads coalesce too unless the view is transposed (then a row of view(W) is a strided column).
template <typename TW, typename TY>
__global__ void GatherKernel(const TW* __restrict__ w, int64_t w_offset, int64_t w_ld,
                             bool transposed, float scale, int64_t rows, int64_t cols,
                             const void* __restrict__ indices, bool index64, int64_t count,
                             const TW* __restrict__ u, const TW* __restrict__ v, int64_t rank,
                             bool delta_transposed, TY* __restrict__ y) {
  const int64_t col_step = transposed ? w_ld : 1;
  for (int64_t t = blockIdx.y; t < count; t += gridDim.y) {
    int64_t r = index64 ? static_cast<const int64_t*>(indices)[t]
                        : static_cast<const int32_t*>(indices)[t];
    if (r < 0) r += rows;
    const bool valid = r >= 0 && r < rows;
    const TW* row = w + w_offset + (valid ? (transposed ? r : r * w_ld) : 0);
    TY* out = y + t * cols;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      float value = valid ? ToFloat(row[c * col_step]) * scale : 0.0f;
      // delta[r, c] = sum_j L[r, j] * R[j, c] (common/low_rank.h)
      for (int64_t j = 0; valid && j < rank; ++j) {
        value += delta_transposed ? ToFloat(v[j * rows + r]) * ToFloat(u[c * rank + j])
                                  : ToFloat(u[r * rank + j]) * ToFloat(v[j * cols + c]);
      }
      out[c] = FromFloat<TY>(value);
    }
  }
}

}  // namespace

cudaError_t LaunchGather(const GatherProblem& p, cudaStream_t stream) {
  if (p.count <= 0 || p.cols <= 0) return cudaSuccess;
  if (!IsSupported(p.index_type)) return cudaErrorInvalidValue;
  const dim3 grid(
      static_cast<unsigned>(std::min<int64_t>((p.cols + kThreads - 1) / kThreads, 64)),
      static_cast<unsigned>(std::min<int64_t>(p.count, 65535)));
  const bool index64 = p.index_type == IndexType::kInt64;
  return DispatchDType(p.w_type, [&](auto w_tag) {
    using TW = typename decltype(w_tag)::type;
    return DispatchDType(p.y_type, [&](auto y_tag) {
      using TY = typename decltype(y_tag)::type;
      GatherKernel<TW, TY><<<grid, kThreads, 0, stream>>>(
          static_cast<const TW*>(p.w), p.w_offset, p.w_ld, p.w_transposed, p.scale, p.rows,
          p.cols, p.indices, index64, p.count, static_cast<const TW*>(p.u),
          static_cast<const TW*>(p.v), p.rank, p.delta_transposed, static_cast<TY*>(p.y));
      return cudaGetLastError();
    });
  });
}

}  // namespace icl::cuda
