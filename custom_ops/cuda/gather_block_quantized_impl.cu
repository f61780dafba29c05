// IclGatherBlockQuantized kernel (see gather_block_quantized_impl.cuh).
#include <algorithm>

#include "cuda/element.cuh"
#include "cuda/gather_block_quantized_impl.cuh"

namespace icl::cuda {
namespace {

constexpr int kThreads = 256;

// One gathered row per blockIdx.y (grid-stride), its K columns across threads.
template <typename T>
__global__ void GatherBlockQuantizedKernel(BlockQuantGeometry g, const uint8_t* __restrict__ b,
                                           const T* __restrict__ scales,
                                           const uint8_t* __restrict__ zero_points,
                                           const int64_t* __restrict__ rows, int64_t count,
                                           T* __restrict__ y) {
  for (int64_t t = blockIdx.y; t < count; t += gridDim.y) {
    const int64_t r = rows[t];
    const uint8_t* data = b + r * g.row_bytes;
    const T* row_scales = scales + r * g.n_blocks;
    const uint8_t* zp_row =
        zero_points == nullptr ? nullptr : zero_points + r * g.zero_point_row_bytes;
    T* out = y + t * g.k;
    for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < g.k;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t block = k / g.block_size;
      const int32_t q = QuantAt(data + block * g.blob, k - block * g.block_size, g.bits);
      const float v = Dequantize(q, ZeroPointAt(zp_row, block, g.bits), ToFloat(row_scales[block]));
      out[k] = FromFloat<T>(v);
    }
  }
}

}  // namespace

cudaError_t LaunchGatherBlockQuantized(const BlockGatherProblem& p, cudaStream_t stream) {
  if (p.count <= 0 || p.geometry.k <= 0) return cudaSuccess;
  const dim3 grid(
      static_cast<unsigned>(std::min<int64_t>((p.geometry.k + kThreads - 1) / kThreads, 64)),
      static_cast<unsigned>(std::min<int64_t>(p.count, 65535)));
  return DispatchDType(p.type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GatherBlockQuantizedKernel<T><<<grid, kThreads, 0, stream>>>(
        p.geometry, p.b, static_cast<const T*>(p.scales), p.zero_points, p.rows, p.count,
        static_cast<T*>(p.y));
    return cudaGetLastError();
  });
}

}  // namespace icl::cuda
