// cuBLAS opened at run time, with our own declarations of the few entry points the GEMMs use.
// Nothing links against cuBLAS: the build machine has no cuBLAS headers, and the op library must
// load (and run its CPU kernels) where there is no cuBLAS at all. Enum values are cublas_api.h's.
#pragma once

#include <cuda_runtime_api.h>
#include <library_types.h>

#include <string>

namespace icl::cuda::cublas {

using Handle = struct cublasContext*;
using Status = int;  // cublasStatus_t

constexpr Status kSuccess = 0;
enum Operation : int { kOpN = 0, kOpT = 1 };  // cublasOperation_t
constexpr int kCompute32F = 68;               // CUBLAS_COMPUTE_32F: float accumulate, no TF32
constexpr int kCompute32FFastTF32 = 77;       // CUBLAS_COMPUTE_32F_FAST_TF32: float inputs as TF32
constexpr int kGemmDefault = -1;              // CUBLAS_GEMM_DEFAULT
constexpr int kDefaultMath = 0;               // CUBLAS_DEFAULT_MATH

// The entry points, resolved by dlsym. Enum parameters are passed as int (same C ABI).
struct Api {
  Status (*create)(Handle*);                           // cublasCreate_v2
  Status (*set_stream)(Handle, cudaStream_t);          // cublasSetStream_v2
  Status (*set_math_mode)(Handle, int);                // cublasSetMathMode
  Status (*gemm_ex)(Handle, int transa, int transb, int m, int n, int k, const void* alpha,
                    const void* a, cudaDataType a_type, int lda, const void* b,
                    cudaDataType b_type, int ldb, const void* beta, void* c, cudaDataType c_type,
                    int ldc, int compute_type, int algo);  // cublasGemmEx
};

// The loaded API, or nullptr with `error` filled. Opens cuBLAS once per process: a copy already
// loaded (by ORT's CUDA provider or torch) is preferred over loading another; the environment
// variable ICL_ONNX_CUBLAS names a library to use instead.
const Api* Load(std::string& error);

// The handle to run on `stream`: `shared` when it is not null (ORT's handle for its compute
// stream, used as ORT configured it), else the calling thread's own handle for the current device
// (created on first use, kept for the life of the thread) with its stream set to `stream`;
// nullptr with `error` filled on failure.
Handle HandleFor(cudaStream_t stream, Handle shared, std::string& error);

// A readable name of a cublasStatus_t.
const char* StatusName(Status status);

}  // namespace icl::cuda::cublas
