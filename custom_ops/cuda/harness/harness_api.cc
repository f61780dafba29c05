// libicl_cuda_harness: the CUDA launchers behind a plain C API taking raw device pointers, so
// tests and benchmarks can drive them from Python (ctypes + torch) without onnxruntime-gpu.
// View attributes are resolved by the same ResolveView as the ORT kernels.
#include <cuda_runtime.h>

#include <string>

#include "common/view.h"
#include "cuda/build_info_impl.cuh"
#include "cuda/gather_impl.cuh"
#include "cuda/matmul_impl.cuh"

#define ICL_HARNESS_API extern "C" __attribute__((visibility("default")))

// The view attributes of docs/operators.md (output_dtype is a separate argument).
struct IclHarnessView {
  int64_t transpose;
  int64_t slice_axis;
  int64_t slice_start;
  int64_t slice_size;
  float scale;
};

namespace {

thread_local std::string last_error;

int Fail(const std::string& message) {
  last_error = message;
  return -1;
}

bool Resolve(const IclHarnessView* view, int64_t w_rows, int64_t w_cols, icl::ViewGeometry& g) {
  icl::ViewAttrs attrs;
  attrs.transpose = view->transpose;
  attrs.slice_axis = view->slice_axis;
  attrs.slice_start = view->slice_start;
  attrs.slice_size = view->slice_size;
  attrs.scale = view->scale;
  return icl::ResolveView(attrs, w_rows, w_cols, g, last_error);
}

bool ValidDType(int code) {
  return icl::IsSupported(static_cast<icl::ElemType>(code));
}

}  // namespace

// The message of the last failed call on this thread.
ICL_HARNESS_API const char* icl_harness_last_error() { return last_error.c_str(); }

// __CUDA_ARCH_LIST__ of the kernels, e.g. "800,900".
ICL_HARNESS_API const char* icl_harness_arch_list() { return icl::cuda::CompiledArchList(); }

// CUDART_VERSION the kernels were built with, e.g. 13000.
ICL_HARNESS_API int icl_harness_cuda_version() { return icl::cuda::CompiledCudaVersion(); }

// SASS and PTX versions of the kernel image loaded for the current device (needs a GPU).
ICL_HARNESS_API int icl_harness_loaded_kernel_versions(int* binary_version, int* ptx_version) {
  cudaError_t e = icl::cuda::LoadedKernelVersions(binary_version, ptx_version);
  return e == cudaSuccess ? 0 : Fail(cudaGetErrorString(e));
}

// Shape [rows, cols] of view(W) for a stored W[w_rows, w_cols].
ICL_HARNESS_API int icl_harness_view_shape(const IclHarnessView* view, int64_t w_rows,
                                           int64_t w_cols, int64_t* rows, int64_t* cols) {
  icl::ViewGeometry g;
  if (!Resolve(view, w_rows, w_cols, g)) return -1;
  *rows = g.rows;
  *cols = g.cols;
  return 0;
}

// Scratch bytes icl_harness_matmul needs.
ICL_HARNESS_API int64_t icl_harness_matmul_workspace_bytes(int a_dtype, int w_dtype, int64_t m,
                                                           int64_t k, int64_t n) {
  icl::cuda::MatMulProblem p;
  p.a_type = static_cast<icl::ElemType>(a_dtype);
  p.w_type = static_cast<icl::ElemType>(w_dtype);
  p.m = m;
  p.k = k;
  p.n = n;
  return static_cast<int64_t>(icl::cuda::MatMulWorkspaceBytes(p));
}

// y[m, n] = a[m, k] @ view(w) + bias, enqueued on `stream`; a, bias and y have a_dtype.
ICL_HARNESS_API int icl_harness_matmul(const void* a, int a_dtype, int64_t m, int64_t k,
                                       const void* w, int w_dtype, int64_t w_rows, int64_t w_cols,
                                       const IclHarnessView* view, const void* bias, void* y,
                                       void* workspace, int64_t workspace_bytes, void* stream) {
  if (!ValidDType(a_dtype) || !ValidDType(w_dtype)) return Fail("unsupported dtype code");
  icl::ViewGeometry g;
  if (!Resolve(view, w_rows, w_cols, g)) return -1;
  if (g.rows != k) return Fail("view(W) rows differ from A's last dimension");
  icl::cuda::MatMulProblem p;
  p.a = a;
  p.a_type = static_cast<icl::ElemType>(a_dtype);
  p.w = w;
  p.w_type = static_cast<icl::ElemType>(w_dtype);
  p.w_offset = g.offset;
  p.w_ld = g.ld;
  p.w_transposed = g.transposed;
  p.scale = view->scale;
  p.bias = bias;
  p.y = y;
  p.m = m;
  p.k = k;
  p.n = g.cols;
  if (static_cast<int64_t>(icl::cuda::MatMulWorkspaceBytes(p)) > workspace_bytes) {
    return Fail("workspace too small");
  }
  std::string error = icl::cuda::LaunchMatMul(p, workspace, static_cast<cudaStream_t>(stream));
  return error.empty() ? 0 : Fail(error);
}

// y[count, H] = view(w)[indices] in y_dtype, enqueued on `stream`.
ICL_HARNESS_API int icl_harness_gather(const void* w, int w_dtype, int64_t w_rows, int64_t w_cols,
                                       const IclHarnessView* view, const void* indices,
                                       int index_dtype, int64_t count, void* y, int y_dtype,
                                       void* stream) {
  if (!ValidDType(w_dtype) || !ValidDType(y_dtype)) return Fail("unsupported dtype code");
  icl::ViewGeometry g;
  if (!Resolve(view, w_rows, w_cols, g)) return -1;
  icl::cuda::GatherProblem p;
  p.w = w;
  p.w_type = static_cast<icl::ElemType>(w_dtype);
  p.w_offset = g.offset;
  p.w_ld = g.ld;
  p.w_transposed = g.transposed;
  p.scale = view->scale;
  p.rows = g.rows;
  p.cols = g.cols;
  p.indices = indices;
  p.index_type = static_cast<icl::IndexType>(index_dtype);
  p.count = count;
  p.y = y;
  p.y_type = static_cast<icl::ElemType>(y_dtype);
  cudaError_t e = icl::cuda::LaunchGather(p, static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? 0 : Fail(cudaGetErrorString(e));
}
