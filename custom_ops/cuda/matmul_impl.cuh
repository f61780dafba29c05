// Launcher of IclMatMul: Y[M, N] = A[M, K] @ view(W) + (A @ L) @ R + bias through cuBLAS, where
// L, R are the low-rank factors seen from delta's side (common/low_rank.h).
// Not a kernel boundary (cuda/boundary.cuh): matmul_impl.cc is compiled as C++ with the rest of
// the library, so this launcher may return a std::string; its kernels sit behind convert_impl.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/elem_type.h"

namespace icl::cuda {

// view(W)[i, j] = scale * W_flat[w_offset + (w_transposed ? j * w_ld + i : i * w_ld + j)],
// i < k, j < n. A, bias and Y share a_type; W may have any supported type.
struct MatMulProblem {
  const void* a = nullptr;     // [m, k], row-major
  ElemType a_type = ElemType::kFloat;
  const void* w = nullptr;     // the stored W
  ElemType w_type = ElemType::kFloat;
  int64_t w_offset = 0;
  int64_t w_ld = 0;
  bool w_transposed = false;
  float scale = 1.0f;
  const void* bias = nullptr;  // [n] or nullptr
  void* y = nullptr;           // [m, n], row-major
  int64_t m = 0, k = 0, n = 0;
  // The low-rank term: U, V of W's type, which must then be A's too (rank 0: none).
  const void* u = nullptr;
  const void* v = nullptr;
  int64_t rank = 0;
  bool delta_transposed = false;
  // In an ORT session: the CUDA provider's cuBLAS handle for the compute stream (no second
  // handle, so no second cuBLAS workspace on the device) and its use_tf32 option, which float32
  // products then follow as ORT's MatMul does. Null and false: the thread's own handle, full
  // float32 (the harness).
  void* cublas_handle = nullptr;
  bool tf32 = false;
};

// Device scratch bytes LaunchMatMul needs for `p` (0 when A and W share a type).
size_t MatMulWorkspaceBytes(const MatMulProblem& p);

// Enqueues the product on `stream` (never synchronises). `workspace` must hold
// MatMulWorkspaceBytes(p) bytes and stay allocated until the stream has run the work (a
// stream-ordered allocator may take it back as soon as this returns). Returns "" on success, else
// what went wrong.
std::string LaunchMatMul(const MatMulProblem& p, void* workspace, cudaStream_t stream);

// Enqueues only the low-rank term, Y += (A @ L) @ R, on `stream` (A, W and Y of one type;
// nothing when p.rank is 0). `t` holds p.m * p.rank elements of A's type, with the lifetime of
// LaunchMatMul's workspace. Returns "" on success, else what went wrong.
std::string LaunchLowRankTerm(const MatMulProblem& p, void* t, cudaStream_t stream);

}  // namespace icl::cuda
