#include "cpu/isa.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace icl::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// Read from CPUID and XGETBV here rather than through __builtin_cpu_supports, whose run-time
// support (__cpu_indicator_init) the compiler's runtime library provides: zig's (the wheel's
// compiler) reports no feature at all, which silently left every kernel scalar.
Isa FromCpuid() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Isa::kScalar;
  const bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28),
             f16c = ecx & (1u << 29);
  if (!(osxsave && avx && fma && f16c)) return Isa::kScalar;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const uint64_t xcr0 = (static_cast<uint64_t>(xcr0_hi) << 32) | xcr0_lo;
  const bool ymm_state = (xcr0 & 0x6) == 0x6;     // the OS saves SSE and AVX registers
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;   // ... and the AVX-512 opmask and zmm
  if (!ymm_state || __get_cpuid_max(0, nullptr) < 7) return Isa::kScalar;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5), avx512f = ebx & (1u << 16);
  if (!avx2) return Isa::kScalar;
  return avx512f && zmm_state ? Isa::kAvx512 : Isa::kAvx2;
}
#endif

Isa Detect() {
  Isa isa = Isa::kScalar;
#if defined(__x86_64__) || defined(__i386__)
  isa = FromCpuid();
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

int64_t L1DataBytes() {
  static const int64_t bytes = [] {
    const long b = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    return b >= 4096 && b <= (1L << 24) ? int64_t{b} : int64_t{32} << 10;
  }();
  return bytes;
}

}  // namespace icl::cpu
