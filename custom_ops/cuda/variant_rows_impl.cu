// IclMatMul with variant_ids through cuBLAS (see variant_rows_impl.cuh).
#include <algorithm>

#include "cuda/variant_rows_impl.cuh"

namespace icl::cuda {
namespace {

// The problem without its low-rank term: the base product of the whole batch.
MatMulProblem Base(const MatMulProblem& p) {
  MatMulProblem base = p;
  base.u = base.v = nullptr;
  base.rank = 0;
  return base;
}

// Bytes of A @ L for the longest run of consecutive batch rows of one variant.
int64_t TermBytes(const MatMulProblem& p, const VariantRows& rows) {
  int64_t longest = 0;
  for (int64_t b0 = 0, b1 = 0; b0 < rows.batch; b0 = b1) {
    for (b1 = b0 + 1; b1 < rows.batch && rows.ids[b1] == rows.ids[b0];) ++b1;
    longest = std::max(longest, b1 - b0);
  }
  return longest * rows.rows_per_batch * p.rank * SizeOf(p.a_type);
}

}  // namespace

size_t VariantMatMulWorkspaceBytes(const MatMulProblem& p, const VariantRows& rows) {
  // The base's scratch and the term's are used one after the other on the stream: one buffer.
  const size_t term = p.rank > 0 ? static_cast<size_t>(TermBytes(p, rows)) : 0;
  return std::max(MatMulWorkspaceBytes(Base(p)), term);
}

std::string LaunchVariantMatMul(const MatMulProblem& p, const VariantRows& rows, void* workspace,
                                cudaStream_t stream) {
  if (std::string error = LaunchMatMul(Base(p), workspace, stream); !error.empty()) return error;
  if (p.rank == 0 || p.m == 0 || p.n == 0 || p.k == 0) return "";
  for (int64_t b0 = 0, b1 = 0; b0 < rows.batch; b0 = b1) {
    for (b1 = b0 + 1; b1 < rows.batch && rows.ids[b1] == rows.ids[b0];) ++b1;
    MatMulProblem run = p;
    const int64_t row0 = b0 * rows.rows_per_batch;
    run.m = (b1 - b0) * rows.rows_per_batch;
    run.a = Advance(p.a, row0 * p.k, p.a_type);
    run.y = Advance(p.y, row0 * p.n, p.a_type);
    run.u = Advance(p.u, rows.ids[b0] * rows.u_elements, p.w_type);
    run.v = Advance(p.v, rows.ids[b0] * rows.v_elements, p.w_type);
    if (std::string error = LaunchLowRankTerm(run, workspace, stream); !error.empty()) {
      return error;
    }
  }
  return "";
}

}  // namespace icl::cuda
