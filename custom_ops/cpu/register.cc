// icl::cpu::RegisterOps: the CPUExecutionProvider kernels of IclMatMul, IclGather and
// IclGatherBlockQuantized, one custom op per type combination, all under the three op names
// (common/register_kernels.h). ORT merges same-named ops into one schema and picks the kernel
// whose types match the node.
#include "common/register_kernels.h"
#include "cpu/gather_block_quantized_kernel.h"
#include "cpu/gather_kernel.h"
#include "cpu/matmul_kernel.h"
#include "icl_ops.h"

namespace icl::cpu {

void RegisterOps(Ort::CustomOpDomain& domain) {
  RegisterKernels<MatMulKernel, GatherKernel>(domain, "CPUExecutionProvider");
  RegisterGatherBlockQuantized<GatherBlockQuantizedKernel>(domain, "CPUExecutionProvider");
}

}  // namespace icl::cpu
