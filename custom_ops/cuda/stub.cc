// Built instead of the CUDA kernels when CUDA is off: registers nothing.
#include "icl_ops.h"

namespace icl::cuda {
void RegisterOps(Ort::CustomOpDomain&) {}
}  // namespace icl::cuda
