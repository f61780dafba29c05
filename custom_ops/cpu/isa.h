// The instruction sets the CPU kernels can use, detected once at run time so that one build
// of the library runs on any x86-64.
#pragma once

#include <cstdint>

namespace icl::cpu {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// kAvx2 means AVX2 + FMA + F16C; kAvx512 means that plus AVX-512F. ICL_CPU_ISA=scalar|avx2
// caps the choice (for testing the fallbacks on a machine that has more).
Isa CpuIsa();

// Bytes of a core's L1 data cache, read once from the system (32 KB where it does not say):
// the kernels that keep a block of an operand in L1 size it from this.
int64_t L1DataBytes();

}  // namespace icl::cpu
