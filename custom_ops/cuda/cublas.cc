// Run-time loading of cuBLAS and per-thread, per-device handles (see cublas.h).
#include "cuda/cublas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <unordered_map>

namespace icl::cuda::cublas {
namespace {

// cuBLAS 13 for CUDA 13 builds; 12 is what onnxruntime-gpu's CUDA 12 provider loads.
constexpr const char* kLibraryNames[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};

void* OpenLibrary(std::string& error) {
  if (const char* path = std::getenv("ICL_ONNX_CUBLAS"); path != nullptr && *path != '\0') {
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) error = std::string("ICL_ONNX_CUBLAS: ") + dlerror();
    return lib;
  }
  // One cuBLAS per process: reuse a loaded copy before opening another version.
  for (const char* name : kLibraryNames) {
    if (void* lib = dlopen(name, RTLD_NOW | RTLD_NOLOAD)) return lib;
  }
  for (const char* name : kLibraryNames) {
    if (void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) return lib;
  }
  error = "cuBLAS not found (tried libcublas.so.13, libcublas.so.12, libcublas.so); install the "
          "CUDA runtime libraries or set ICL_ONNX_CUBLAS to libcublas's path";
  return nullptr;
}

template <typename Fn>
bool Resolve(void* lib, const char* name, Fn& out, std::string& error) {
  out = reinterpret_cast<Fn>(dlsym(lib, name));
  if (out == nullptr) error = std::string("cuBLAS has no symbol ") + name;
  return out != nullptr;
}

struct Loaded {
  Api api{};
  std::string error;
  bool ok = false;
};

Loaded LoadLibrary() {
  Loaded l;
  void* lib = OpenLibrary(l.error);
  if (lib == nullptr) return l;
  l.ok = Resolve(lib, "cublasCreate_v2", l.api.create, l.error) &&
         Resolve(lib, "cublasSetStream_v2", l.api.set_stream, l.error) &&
         Resolve(lib, "cublasSetMathMode", l.api.set_math_mode, l.error) &&
         Resolve(lib, "cublasGemmEx", l.api.gemm_ex, l.error);
  return l;
}

}  // namespace

const Api* Load(std::string& error) {
  static const Loaded loaded = LoadLibrary();
  if (!loaded.ok) {
    error = loaded.error;
    return nullptr;
  }
  return &loaded.api;
}

Handle HandleFor(cudaStream_t stream, Handle shared, std::string& error) {
  const Api* api = Load(error);
  if (api == nullptr) return nullptr;
  if (shared != nullptr) return shared;  // already bound to the stream by its owner
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) {
    error = std::string("cudaGetDevice: ") + cudaGetErrorString(e);
    return nullptr;
  }
  // Handles are never destroyed: destroying them from thread-exit or static destructors races
  // the CUDA driver's own teardown at process exit (PyTorch's handle pool avoids it likewise).
  thread_local std::unordered_map<int, Handle> handles;
  Handle& handle = handles[device];
  if (handle == nullptr) {
    if (Status s = api->create(&handle); s != kSuccess) {
      handle = nullptr;
      error = std::string("cublasCreate: ") + StatusName(s);
      return nullptr;
    }
    api->set_math_mode(handle, kDefaultMath);
  }
  if (Status s = api->set_stream(handle, stream); s != kSuccess) {
    error = std::string("cublasSetStream: ") + StatusName(s);
    return nullptr;
  }
  return handle;
}

const char* StatusName(Status status) {
  switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

}  // namespace icl::cuda::cublas
