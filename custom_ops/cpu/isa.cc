#include "cpu/isa.h"

#include <cstdlib>
#include <cstring>

namespace icl::cpu {
namespace {

Isa Detect() {
  Isa isa = Isa::kScalar;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    isa = Isa::kAvx2;
    if (__builtin_cpu_supports("avx512f")) isa = Isa::kAvx512;
  }
#endif
  if (const char* cap = std::getenv("ICL_CPU_ISA")) {
    if (std::strcmp(cap, "scalar") == 0) isa = Isa::kScalar;
    if (std::strcmp(cap, "avx2") == 0 && isa > Isa::kAvx2) isa = Isa::kAvx2;
  }
  return isa;
}

}  // namespace

Isa CpuIsa() {
  static const Isa isa = Detect();
  return isa;
}

}  // namespace icl::cpu
