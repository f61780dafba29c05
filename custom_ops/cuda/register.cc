// icl::cuda::RegisterOps: the CUDAExecutionProvider kernels of IclMatMul and IclGather, one
// custom op per type combination, built from the signatures the CPU kernels use too
// (common/op_signatures.h) so ORT can merge both backends into one schema.
// Registering touches no CUDA API, so it is harmless in a CPU-only onnxruntime or on a machine
// without a driver: ORT creates these kernels only for nodes placed on the CUDA provider.
#include "common/register_kernels.h"
#include "cuda/gather.h"
#include "cuda/gather_block_quantized.h"
#include "cuda/matmul.h"
#include "icl_ops.h"

namespace icl::cuda {

void RegisterOps(Ort::CustomOpDomain& domain) {
  RegisterKernels<MatMulKernel, GatherKernel>(domain, kProvider);
  RegisterGatherBlockQuantized<GatherBlockQuantizedKernel>(domain, kProvider);
}

}  // namespace icl::cuda
