// Work splitting over ONNX Runtime's intra-op thread pool.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>

#include "onnxruntime_cxx_api.h"

namespace icl::cpu {

// Runs fn(i) for every i in [0, count) on the session's intra-op thread pool (inline when the
// session has none), one index at a time as threads free up, so uneven tasks balance out.
// fn must not throw: an exception is caught on the worker and returned as an error status.
template <typename Fn>
Ort::Status ParallelFor(OrtKernelContext* context, int64_t count, const Fn& fn) {
  struct Job {
    const Fn* fn;
    std::atomic<bool> failed{false};
  } job{&fn};
  auto run_one = [](void* data, size_t i) {
    Job* j = static_cast<Job*>(data);
    try {
      (*j->fn)(static_cast<int64_t>(i));
    } catch (...) {
      j->failed.store(true, std::memory_order_relaxed);
    }
  };
  if (count <= 0) return Ort::Status{nullptr};
  Ort::Status status{
      Ort::GetApi().KernelContext_ParallelFor(context, run_one, static_cast<size_t>(count), 0, &job)};
  if (status.IsOK() && job.failed.load()) {
    return Ort::Status("an ICL CPU kernel task failed (out of memory?)", ORT_FAIL);
  }
  return status;
}

// Number of chunks of about `chunk` items that `total` items split into (at least one).
inline int64_t ChunkCount(int64_t total, int64_t chunk) {
  return total <= chunk ? 1 : (total + chunk - 1) / chunk;
}

}  // namespace icl::cpu
