#include "cpu/matmul_kernel.h"

#include <vector>

#include "cpu/backend.h"
#include "cpu/convert.h"
#include "cpu/matmul.h"

namespace icl::cpu {

Ort::Status MatMulKernel::Create(const OrtKernelInfo* info, std::unique_ptr<MatMulKernel>& out) {
  MatMulInput input;
  if (Ort::Status status = MatMulInput::Create(info, kBackend, input); !status.IsOK()) {
    return status;
  }
  out.reset(new MatMulKernel(input));
  return Ort::Status{nullptr};
}

Ort::Status MatMulKernel::Compute(OrtKernelContext* context) {
  MatMulCall call;
  if (Ort::Status status = input_.Read(context, call); !status.IsOK()) return status;
  MatMulProblem p;
  p.m = call.m;
  p.k = call.k;
  p.w = call.w;
  p.w_type = call.w_type;
  p.view = call.view;
  p.scale = call.scale;
  p.y = call.y;
  p.y_type = call.a_type;
  // A, bias and the factors are small next to W: 16-bit ones are widened to float32 once.
  std::vector<float> a_float, bias_float, u_float, v_float;
  p.a = AsFloat(call.a, call.m * call.k, call.a_type, a_float);  // A's element count: it fits
  if (call.bias != nullptr) p.bias = AsFloat(call.bias, call.n, call.a_type, bias_float);
  p.delta = ToLowRankTerm(call.u, call.v, call.w_type, call.view, call.rank,
                          call.delta_transposed, u_float, v_float);
  return RunMatMul(context, p);
}

}  // namespace icl::cpu
