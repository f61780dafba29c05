// Placeholder until the CPU kernels land.
#include "icl_ops.h"

namespace icl::cpu {
void RegisterOps(Ort::CustomOpDomain&) {}
}  // namespace icl::cpu
