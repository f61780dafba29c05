// IclMatMul through cuBLAS (see matmul_impl.cuh).
//
// Row-major Y = A @ V is column-major Y^T = V^T @ A^T, so W goes to cuBLAS as the first operand:
// a view that is not transposed is V^T stored column-major with leading dimension w_ld (op N), a
// transposed view is V stored column-major (op T). Slices are a pointer offset with the stored
// leading dimension, the scale is alpha, the bias is C pre-filled with beta = 1: no view costs a
// copy.
//
// Cast views (W's type differs from A's): cublasGemmEx needs both inputs of one type, so the GEMM
// runs in float32 (exact for every input type) over column chunks of the view:
//  - A is widened once into scratch when it is 16-bit;
//  - a 16-bit W is widened chunk by chunk into scratch (never a whole float32 copy of W);
//  - a 16-bit Y is computed in a float32 chunk and rounded once, as the reference does.
// Narrowing either operand to the other's 16-bit type would be faster but not exact.
#include <algorithm>

#include "cuda/convert_impl.cuh"
#include "cuda/cublas.h"
#include "cuda/matmul_impl.cuh"

namespace icl::cuda {
namespace {

constexpr int64_t kChunkBytes = int64_t{64} << 20;  // scratch per converted chunk of W and Y
constexpr int64_t kIntMax = 2147483647;

cudaDataType CudaType(ElemType t) {
  switch (t) {
    case ElemType::kFloat: return CUDA_R_32F;
    case ElemType::kFloat16: return CUDA_R_16F;
    case ElemType::kBFloat16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

// How a mixed-type product is split and where its scratch lies.
struct MixedPlan {
  bool widen_a = false, widen_w = false, narrow_y = false;
  int64_t chunk = 0;  // columns of view(W) per GEMM
  int64_t a_bytes = 0, w_bytes = 0, y_bytes = 0;
};

MixedPlan PlanMixed(const MatMulProblem& p) {
  MixedPlan plan;
  plan.widen_a = p.a_type != ElemType::kFloat;
  plan.widen_w = p.w_type != ElemType::kFloat;
  plan.narrow_y = plan.widen_a;
  const int64_t per_col = 4 * ((plan.widen_w ? p.k : 0) + (plan.narrow_y ? p.m : 0));
  int64_t chunk = per_col > 0 ? std::max<int64_t>(kChunkBytes / per_col, 1) : p.n;
  if (chunk >= 256) chunk -= chunk % 256;  // keep GEMM tiles whole
  plan.chunk = std::min(chunk, p.n);
  plan.a_bytes = plan.widen_a ? 4 * p.m * p.k : 0;
  plan.w_bytes = plan.widen_w ? 4 * p.k * plan.chunk : 0;
  plan.y_bytes = plan.narrow_y ? 4 * p.m * plan.chunk : 0;
  return plan;
}

int64_t Align256(int64_t bytes) { return (bytes + 255) / 256 * 256; }

// Column-major Y^T[n, m] = alpha * op(W)[n, k] @ A^T[k, m] + beta * Y^T. `tf32`: float32
// inputs go through the tensor cores as TF32 (ORT's use_tf32); 16-bit inputs are not affected.
std::string Gemm(cublas::Handle handle, bool tf32, bool w_transposed, int64_t m, int64_t n,
                 int64_t k, float alpha, const void* w, ElemType w_type, int64_t ldw,
                 const void* a, ElemType a_type, float beta, void* y, ElemType y_type,
                 int64_t ldy) {
  std::string error;
  const cublas::Api* api = cublas::Load(error);
  if (api == nullptr) return error;
  const bool float_inputs = w_type == ElemType::kFloat && a_type == ElemType::kFloat;
  const int compute = tf32 && float_inputs ? cublas::kCompute32FFastTF32 : cublas::kCompute32F;
  const cublas::Status s = api->gemm_ex(
      handle, w_transposed ? cublas::kOpT : cublas::kOpN, cublas::kOpN, static_cast<int>(n),
      static_cast<int>(m), static_cast<int>(k), &alpha, w, CudaType(w_type),
      static_cast<int>(ldw), a, CudaType(a_type), static_cast<int>(k), &beta, y,
      CudaType(y_type), static_cast<int>(ldy), compute, cublas::kGemmDefault);
  if (s != cublas::kSuccess) return std::string("cublasGemmEx: ") + cublas::StatusName(s);
  return "";
}

// Y += (A @ L) @ R, as column-major T^T[r, m] = L^T @ A^T, then Y^T[n, m] += R^T @ T^T.
// Plain: L = U [k, r] and R = V [r, n]; transposed: L = V^T (V [r, k]), R = U^T (U [n, r]).
std::string AddLowRank(const MatMulProblem& p, void* t, cublas::Handle handle) {
  const bool tr = p.delta_transposed;
  std::string err = Gemm(handle, p.tf32, tr, p.m, p.rank, p.k, 1.0f, tr ? p.v : p.u, p.a_type,
                         tr ? p.k : p.rank, p.a, p.a_type, 0.0f, t, p.a_type, p.rank);
  if (!err.empty()) return err;
  return Gemm(handle, p.tf32, tr, p.m, p.n, p.rank, 1.0f, tr ? p.u : p.v, p.a_type,
              tr ? p.rank : p.n, t, p.a_type, 1.0f, p.y, p.a_type, p.n);
}

std::string CudaError(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorString(e);
}

// Y = bias broadcast over rows (or zeros): the C operand of a beta = 1 GEMM, and the whole
// answer when k = 0.
std::string FillWithBias(const MatMulProblem& p, void* y, ElemType y_type, int64_t ldy,
                         int64_t col0, int64_t cols, cudaStream_t stream) {
  if (p.bias == nullptr) return "";
  cudaError_t e = LaunchConvert2D(Advance(p.bias, col0, p.a_type), p.a_type, 0, y, y_type, ldy,
                                  p.m, cols, stream);
  return e == cudaSuccess ? "" : CudaError("bias fill", e);
}

std::string LaunchSameType(const MatMulProblem& p, cublas::Handle handle, cudaStream_t stream) {
  if (std::string err = FillWithBias(p, p.y, p.a_type, p.n, 0, p.n, stream); !err.empty()) {
    return err;
  }
  return Gemm(handle, p.tf32, p.w_transposed, p.m, p.n, p.k, p.scale,
              Advance(p.w, p.w_offset, p.w_type), p.w_type, p.w_ld, p.a, p.a_type,
              p.bias != nullptr ? 1.0f : 0.0f, p.y, p.a_type, p.n);
}

std::string LaunchMixed(const MatMulProblem& p, void* workspace, cublas::Handle handle,
                        cudaStream_t stream) {
  const MixedPlan plan = PlanMixed(p);
  char* scratch = static_cast<char*>(workspace);
  void* a32 = plan.widen_a ? scratch : nullptr;
  void* w32 = plan.widen_w ? scratch + Align256(plan.a_bytes) : nullptr;
  void* y32 = plan.narrow_y ? scratch + Align256(plan.a_bytes) + Align256(plan.w_bytes) : nullptr;
  const float beta = p.bias != nullptr ? 1.0f : 0.0f;

  const void* a = p.a;
  if (plan.widen_a) {
    cudaError_t e =
        LaunchConvert2D(p.a, p.a_type, p.k, a32, ElemType::kFloat, p.k, p.m, p.k, stream);
    if (e != cudaSuccess) return CudaError("widening A", e);
    a = a32;
  }
  for (int64_t col0 = 0; col0 < p.n; col0 += plan.chunk) {
    const int64_t cols = std::min(plan.chunk, p.n - col0);
    // Column col0 of view(W) starts at element col0 (not transposed) or row col0 of W.
    const void* w = Advance(p.w, p.w_offset + (p.w_transposed ? col0 * p.w_ld : col0), p.w_type);
    int64_t ldw = p.w_ld;
    if (plan.widen_w) {
      // The chunk keeps the view's orientation, packed: [k, cols] or [cols, k] row-major.
      const int64_t rows = p.w_transposed ? cols : p.k;
      const int64_t row_len = p.w_transposed ? p.k : cols;
      cudaError_t e = LaunchConvert2D(w, p.w_type, p.w_ld, w32, ElemType::kFloat, row_len, rows,
                                      row_len, stream);
      if (e != cudaSuccess) return CudaError("widening W", e);
      w = w32;
      ldw = row_len;
    }
    void* y = plan.narrow_y ? y32 : Advance(p.y, col0, p.a_type);
    const int64_t ldy = plan.narrow_y ? cols : p.n;
    if (std::string err = FillWithBias(p, y, ElemType::kFloat, ldy, col0, cols, stream);
        !err.empty()) {
      return err;
    }
    if (std::string err = Gemm(handle, p.tf32, p.w_transposed, p.m, cols, p.k, p.scale, w,
                               ElemType::kFloat, ldw, a, ElemType::kFloat, beta, y,
                               ElemType::kFloat, ldy);
        !err.empty()) {
      return err;
    }
    if (plan.narrow_y) {
      cudaError_t e = LaunchConvert2D(y32, ElemType::kFloat, cols, Advance(p.y, col0, p.a_type),
                                      p.a_type, p.n, p.m, cols, stream);
      if (e != cudaSuccess) return CudaError("rounding Y", e);
    }
  }
  return "";
}

}  // namespace

namespace {

// Scratch of the cast views' chunks (0 when A and W share a type).
int64_t MixedBytes(const MatMulProblem& p) {
  if (p.a_type == p.w_type || p.m <= 0 || p.n <= 0 || p.k <= 0) return 0;
  const MixedPlan plan = PlanMixed(p);
  return Align256(plan.a_bytes) + Align256(plan.w_bytes) + Align256(plan.y_bytes);
}

}  // namespace

size_t MatMulWorkspaceBytes(const MatMulProblem& p) {
  const int64_t t_bytes = p.m * p.rank * SizeOf(p.a_type);
  const int64_t low_rank = p.rank > 0 ? Align256(t_bytes) : 0;
  return static_cast<size_t>(MixedBytes(p) + low_rank);
}

std::string LaunchLowRankTerm(const MatMulProblem& p, void* t, cudaStream_t stream) {
  if (p.rank == 0 || p.m == 0 || p.n == 0 || p.k == 0) return "";
  if (p.a_type != p.w_type) return "low-rank factors need A and W of one type";
  if (p.m > kIntMax || p.n > kIntMax || p.k > kIntMax || p.rank > kIntMax) {
    return "a dimension exceeds cuBLAS's 32-bit limit";
  }
  if (t == nullptr) return "missing workspace";
  std::string error;
  cublas::Handle handle =
      cublas::HandleFor(stream, static_cast<cublas::Handle>(p.cublas_handle), error);
  if (handle == nullptr) return error;
  return AddLowRank(p, t, handle);
}

std::string LaunchMatMul(const MatMulProblem& p, void* workspace, cudaStream_t stream) {
  if (!IsSupported(p.a_type) || !IsSupported(p.w_type)) return "unsupported element type";
  if (p.m < 0 || p.n < 0 || p.k < 0) return "negative dimension";
  if (p.m > kIntMax || p.n > kIntMax || p.k > kIntMax || p.w_ld > kIntMax || p.rank > kIntMax) {
    return "a dimension exceeds cuBLAS's 32-bit limit";
  }
  if (p.m == 0 || p.n == 0) return "";
  if (p.k == 0) {  // an empty sum: Y = bias or zeros
    if (p.bias != nullptr) return FillWithBias(p, p.y, p.a_type, p.n, 0, p.n, stream);
    cudaError_t e = cudaMemsetAsync(p.y, 0, p.m * p.n * SizeOf(p.a_type), stream);
    return e == cudaSuccess ? "" : CudaError("zero fill", e);
  }
  if (MatMulWorkspaceBytes(p) > 0 && workspace == nullptr) return "missing workspace";
  std::string error;
  cublas::Handle handle =
      cublas::HandleFor(stream, static_cast<cublas::Handle>(p.cublas_handle), error);
  if (handle == nullptr) return error;
  if (p.rank > 0 && p.a_type != p.w_type) return "low-rank factors need A and W of one type";
  error = p.a_type == p.w_type ? LaunchSameType(p, handle, stream)
                               : LaunchMixed(p, workspace, handle, stream);
  if (!error.empty() || p.rank == 0) return error;
  return AddLowRank(p, static_cast<char*>(workspace) + MixedBytes(p), handle);
}

}  // namespace icl::cuda
