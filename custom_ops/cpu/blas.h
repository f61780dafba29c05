// Single-threaded OpenBLAS calls: the kernels split work over ORT's thread pool themselves,
// and OpenBLAS threads of its own would fight those threads for the cores.
#pragma once

#include <cstdint>

namespace icl::cpu {

// C[m, n] = alpha * A[m, k] @ op(B) (beta = 0), row-major; op(B) = B[k, n], or B[n, k]^T when
// `b_transposed`.
void Sgemm(bool b_transposed, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc);

// y[n] = alpha * x[k] @ B[k, n], row-major B with leading dimension ldb.
void Sgemv(int64_t n, int64_t k, float alpha, const float* x, const float* b, int64_t ldb,
           float* y);

}  // namespace icl::cpu
