#include "cpu/huge_pages.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace icl::cpu {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

#if defined(__linux__)
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux 6.1; older C libraries lack the name
#endif
#endif

bool Disabled() {
  const char* value = std::getenv("ICL_ONNX_HUGE_PAGES");
  return value != nullptr && std::strcmp(value, "0") == 0;
}

}  // namespace

bool CollapseToHugePages(const void* data, size_t bytes) {
#if defined(__linux__)
  if (data == nullptr || Disabled()) return false;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  if (begin > UINTPTR_MAX - kHugePage || bytes > UINTPTR_MAX - begin) return false;
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (first >= last) return false;
  // A refusal (EINVAL before Linux 6.1, EAGAIN or ENOMEM without a free huge page) leaves W
  // as it was; the kernels read it either way.
  return madvise(reinterpret_cast<void*>(first), last - first, MADV_COLLAPSE) == 0;
#else
  (void)data;
  (void)bytes;
  return false;
#endif
}

}  // namespace icl::cpu
