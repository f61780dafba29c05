#include "cpu/blas.h"

#include <cblas.h>

#include <mutex>

namespace icl::cpu {
namespace {

// scipy-openblas32 is the op library's private copy (numpy and scipy bundle their own), so
// fixing its thread count for the process affects no one else. openblas_set_num_threads is
// not thread-local in pthread builds, hence once, before the first call.
void UseOneBlasThread() {
  static std::once_flag once;
  std::call_once(once, [] { scipy_openblas_set_num_threads(1); });
}

}  // namespace

void Sgemm(bool b_transposed, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  UseOneBlasThread();
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans,
                    static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
                    alpha, a, static_cast<blasint>(lda), b, static_cast<blasint>(ldb), 0.0f, c,
                    static_cast<blasint>(ldc));
}

void Sgemv(int64_t n, int64_t k, float alpha, const float* x, const float* b, int64_t ldb,
           float* y) {
  UseOneBlasThread();
  scipy_cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(k), static_cast<blasint>(n),
                    alpha, b, static_cast<blasint>(ldb), x, 1, 0.0f, y, 1);
}

}  // namespace icl::cpu
