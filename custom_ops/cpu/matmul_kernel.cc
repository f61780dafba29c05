#include "cpu/matmul_kernel.h"

#include <string>
#include <vector>

#include "cpu/convert.h"
#include "cpu/matmul.h"

namespace icl::cpu {
namespace {

Ort::Status Error(const std::string& message) {
  return Ort::Status(("IclMatMul: " + message).c_str(), ORT_INVALID_ARGUMENT);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

Ort::Status MatMulKernel::Create(const OrtKernelInfo* info, std::unique_ptr<MatMulKernel>& out) {
  ViewAttrs attrs;
  if (Ort::Status status = ReadViewAttrs(info, "IclMatMul", attrs); !status.IsOK()) return status;
  out.reset(new MatMulKernel(attrs));
  return Ort::Status{nullptr};
}

Ort::Status MatMulKernel::Compute(OrtKernelContext* context) {
  Ort::KernelContext ctx(context);
  const Ort::ConstValue a = ctx.GetInput(0);
  const Ort::ConstValue w = ctx.GetInput(1);
  const size_t inputs = ctx.GetInputCount();
  const Ort::ConstValue bias = inputs > 2 ? ctx.GetInput(2) : Ort::ConstValue(nullptr);
  const Ort::ConstValue u = inputs > 3 ? ctx.GetInput(3) : Ort::ConstValue(nullptr);
  const Ort::ConstValue v = inputs > 4 ? ctx.GetInput(4) : Ort::ConstValue(nullptr);
  const auto a_info = a.GetTensorTypeAndShapeInfo();
  const auto w_info = w.GetTensorTypeAndShapeInfo();
  ElemType a_type, w_type;
  if (!ToElemType(a_info.GetElementType(), a_type) ||
      !ToElemType(w_info.GetElementType(), w_type)) {
    return Error("A and W must be float32, float16 or bfloat16");
  }
  const std::vector<int64_t> a_shape = a_info.GetShape();
  const std::vector<int64_t> w_shape = w_info.GetShape();
  if (a_shape.empty()) return Error("A must have rank >= 1");
  if (w_shape.size() != 2) return Error("W must be 2-D, got " + ShapeString(w_shape));

  ViewGeometry view;
  std::string error;
  if (!ResolveView(attrs_, w_shape[0], w_shape[1], view, error)) return Error(error);
  const int64_t k = a_shape.back();
  if (view.rows != k) {
    return Error("A " + ShapeString(a_shape) + " does not match view(W) [" +
                 std::to_string(view.rows) + ", " + std::to_string(view.cols) + "]");
  }
  const int64_t n = view.cols;
  int64_t m = 1;  // rows of A: the product of its leading dimensions
  for (size_t i = 0; i + 1 < a_shape.size(); ++i) m *= a_shape[i];

  MatMulProblem p;
  p.m = m;
  p.k = k;
  p.w = w.GetTensorRawData();
  p.w_type = w_type;
  p.view = view;
  p.scale = attrs_.scale;

  // A and bias are small next to W: 16-bit ones are widened to float32 once, up front.
  std::vector<float> a_float, bias_float;
  p.a = AsFloat(a, a_type, a_float);
  if (bias) {
    const auto bias_info = bias.GetTensorTypeAndShapeInfo();
    if (bias_info.GetElementCount() != static_cast<size_t>(n) || bias_info.GetShape().size() != 1) {
      return Error("bias must have shape [" + std::to_string(n) + "], got " +
                   ShapeString(bias_info.GetShape()));
    }
    p.bias = AsFloat(bias, a_type, bias_float);
  }

  std::vector<float> u_float, v_float;
  if (std::string problem = ReadLowRank(u, v, w_type, view, attrs_.delta_transpose != 0,
                                        u_float, v_float, p.delta);
      !problem.empty()) {
    return Error(problem);
  }

  std::vector<int64_t> y_shape(a_shape.begin(), a_shape.end() - 1);
  y_shape.push_back(n);
  Ort::UnownedValue y = ctx.GetOutput(0, y_shape);
  p.y = y.GetTensorMutableRawData();
  p.y_type = a_type;
  return RunMatMul(context, p);
}

}  // namespace icl::cpu
