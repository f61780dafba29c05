// Launcher of IclMatMul with variant_ids: the base product A @ view(W) (+ bias) once for the
// whole batch (LaunchMatMul), then each batch row's low-rank term with its own variant's
// factors. Batch rows are taken in runs of consecutive rows of one variant, each run the
// low-rank term's two cuBLAS GEMMs (LaunchLowRankTerm) on its contiguous rows of A and Y: the
// same calls as a node without variant_ids, so correct by construction, at up to B pairs of
// small GEMMs per call. Everything is enqueued on one stream, in order; nothing synchronises.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/matmul_impl.cuh"

namespace icl::cuda {

// Which factors each batch row reads: p.u, p.v of the problem hold every variant's, stacked.
struct VariantRows {
  const int64_t* ids = nullptr;  // [batch], host memory, each in [0, NV) (checked by the caller)
  int64_t batch = 0;
  int64_t rows_per_batch = 0;    // p.m / batch
  int64_t u_elements = 0;        // one variant's U and V, in elements
  int64_t v_elements = 0;
};

// Device scratch bytes LaunchVariantMatMul needs.
size_t VariantMatMulWorkspaceBytes(const MatMulProblem& p, const VariantRows& rows);

// Enqueues Y = A @ view(W) + bias + per batch row b, rows [b * rows_per_batch, ...) of
// (A @ L_ids[b]) @ R_ids[b] on `stream`. `workspace` as for LaunchMatMul, of
// VariantMatMulWorkspaceBytes bytes. Returns "" on success, else what went wrong.
std::string LaunchVariantMatMul(const MatMulProblem& p, const VariantRows& rows, void* workspace,
                                cudaStream_t stream);

}  // namespace icl::cuda
