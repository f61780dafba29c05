// Strided 2-D conversion kernel (see convert_impl.cuh).
#include <algorithm>

#include "cuda/convert_impl.cuh"
#include "cuda/element.cuh"

namespace icl::cuda {
namespace {

constexpr int kThreads = 256;

// Rows go to blockIdx.y (grid-stride), columns to threads, so reads and writes of a row coalesce.
template <typename S, typename D>
__global__ void Convert2DKernel(const S* __restrict__ src, int64_t src_ld, D* __restrict__ dst,
                                int64_t dst_ld, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const S* s = src + r * src_ld;
    D* d = dst + r * dst_ld;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
         c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      d[c] = FromFloat<D>(ToFloat(s[c]));
    }
  }
}

}  // namespace

cudaError_t LaunchConvert2D(const void* src, ElemType src_type, int64_t src_ld, void* dst,
                            ElemType dst_type, int64_t dst_ld, int64_t rows, int64_t cols,
                            cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((cols + kThreads - 1) / kThreads, 1024)),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  return DispatchDType(src_type, [&](auto s_tag) {
    using S = typename decltype(s_tag)::type;
    return DispatchDType(dst_type, [&](auto d_tag) {
      using D = typename decltype(d_tag)::type;
      Convert2DKernel<S, D><<<grid, kThreads, 0, stream>>>(
          static_cast<const S*>(src), src_ld, static_cast<D*>(dst), dst_ld, rows, cols);
      return cudaGetLastError();
    });
  });
}

}  // namespace icl::cuda
