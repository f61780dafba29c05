// IclMatMul's input front end (common/input.h), shared by the CPU and CUDA kernels: the view
// attributes at kernel creation, then per call every input's type and shape, the view's fit in
// W, the bias, the low-rank factors, the variant ids (every one, read on the host) and the size
// of Y, before a byte of Y is written. Inputs: A, W[, bias][, U, V][, variant_ids].
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/input.h"
#include "common/low_rank.h"
#include "common/view.h"

namespace icl {

// One checked IclMatMul call: Y[m, n] = A[m, k] @ view(W) + (A @ L) @ R + bias, in the layout of
// docs/operators.md. Every pointer is the backend's memory (host on CPU, device on CUDA).
// With variant_ids (variants > 0), U and V stack one pair of factors per variant and A's rows
// split into variant_ids.size() blocks of rows_per_batch rows: block b adds the term of pair
// variant_ids[b], whose factors start VariantFactorElements() elements into U and V per variant.
struct MatMulCall {
  ElemType a_type = ElemType::kFloat;  // A, bias and Y
  ElemType w_type = ElemType::kFloat;  // W, U and V
  int64_t m = 0, k = 0, n = 0;         // m: the product of A's leading dimensions
  ViewGeometry view;                   // view(W) is [k, n], inside W
  float scale = 1.0f;
  int64_t rank = 0;  // of the low-rank term (common/low_rank.h); 0: none
  bool delta_transposed = false;
  const void* a = nullptr;     // [m, k]
  const void* w = nullptr;     // the stored W
  const void* bias = nullptr;  // [n], or null
  const void* u = nullptr;     // [k, rank] ([n, rank] when delta_transposed), or null
  const void* v = nullptr;     // [rank, n] ([rank, k] when delta_transposed), or null
  void* y = nullptr;           // [m, n]
  int64_t variants = 0;        // NV, U [NV, ...] and V [NV, ...]; 0: no variant_ids
  int64_t rows_per_batch = 0;  // m / B
  std::vector<int64_t> variant_ids;  // [B], host memory, each in [0, variants)

  // Elements of one variant's U and V in the stacked factors (variant i's start i times these
  // into U and V; i * count <= the factors' element count, which fits).
  int64_t VariantUElements() const { return (delta_transposed ? n : k) * rank; }
  int64_t VariantVElements() const { return rank * (delta_transposed ? k : n); }
};

// The message for a variant id outside [0, variants), at batch row `row`.
inline std::string VariantIdOutOfRangeMessage(int64_t id, int64_t row, int64_t variants) {
  return "variant id " + std::to_string(id) + " (batch row " + std::to_string(row) +
         ") is outside [0, " + std::to_string(variants) + ")";
}

// Copies `count` variant ids, checking each lies in [0, variants); "" or the first bad one's
// message.
inline std::string ReadVariantIds(const int64_t* ids, int64_t count, int64_t variants,
                                  std::vector<int64_t>& out) {
  out.assign(ids, ids + count);
  for (int64_t b = 0; b < count; ++b) {
    if (out[b] < 0 || out[b] >= variants) return VariantIdOutOfRangeMessage(out[b], b, variants);
  }
  return "";
}

// The checks of variant_ids' type and shape against A's m rows (its values: ReadVariantIds);
// sets rows_per_batch. An empty A (m = 0) splits into any B >= 1 blocks of no rows.
inline std::string CheckVariantIdsShape(const TensorDesc& ids, MatMulCall& call) {
  if (ids.onnx_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
    return "variant_ids must be int64, got " + OnnxTypeName(ids.onnx_type);
  }
  if (ids.shape.size() != 1) return "variant_ids must be 1-D [B], got " + ShapeString(ids.shape);
  const int64_t batch = ids.shape[0];
  if (batch < 1) return "variant_ids must hold at least one id, got " + ShapeString(ids.shape);
  if (call.m % batch != 0) {
    return std::to_string(call.m) + " rows of A do not split into " + std::to_string(batch) +
           " batch rows (variant_ids " + ShapeString(ids.shape) + ")";
  }
  call.rows_per_batch = call.m / batch;
  return "";
}

// IclMatMul's checks on types and shapes alone: fills `call`'s types and sizes and Y's shape;
// returns "" or what is wrong.
inline std::string CheckMatMul(const ViewAttrs& attrs, const Backend& backend, const TensorDesc& a,
                               const TensorDesc& w, const TensorDesc& bias, const TensorDesc& u,
                               const TensorDesc& v, const TensorDesc& ids, MatMulCall& call,
                               std::vector<int64_t>& y_shape) {
  if (!ToElemType(a.onnx_type, call.a_type) || !ToElemType(w.onnx_type, call.w_type)) {
    return "A and W must be float32, float16 or bfloat16";
  }
  if (a.shape.empty()) return "A must have rank >= 1";
  if (w.shape.size() != 2) return "W must be 2-D, got " + ShapeString(w.shape);
  // Y's shape: A's leading dimensions, then N (one allocation per call).
  y_shape.reserve(a.shape.size());
  y_shape.assign(a.shape.begin(), a.shape.end() - 1);
  // a_count itself is not used: counting it checks that A's shape has no negative dimension
  // and that its element count (m * K, what the kernel reads) does not overflow.
  int64_t a_count = 0;
  if (!ElementCount(a.shape, a_count) || !ElementCount(y_shape, call.m)) {
    return "A " + ShapeString(a.shape) + " has a negative dimension or too many elements";
  }
  std::string error;
  if (!ResolveView(attrs, w.shape[0], w.shape[1], call.view, error)) return error;
  call.k = a.shape.back();
  call.n = call.view.cols;
  if (call.view.rows != call.k) {
    return "A " + ShapeString(a.shape) + " does not match view(W) " +
           ShapeString({call.view.rows, call.view.cols});
  }
  y_shape.push_back(call.n);
  if (error = CheckTensorSize("Y", y_shape, SizeOf(call.a_type)); !error.empty()) return error;
  if (bias.present && (bias.onnx_type != a.onnx_type || bias.shape.size() != 1 ||
                       bias.shape[0] != call.n)) {
    return "bias must have shape [" + std::to_string(call.n) + "] and A's type, got " +
           ShapeString(bias.shape);
  }
  if ((u.present && u.onnx_type != w.onnx_type) || (v.present && v.onnx_type != w.onnx_type)) {
    return "U and V must have W's type";
  }
  call.delta_transposed = attrs.delta_transpose != 0;
  if (ids.present) {
    if (error = CheckVariantIdsShape(ids, call); !error.empty()) return error;
    error = CheckStackedLowRankShapes(u.present, u.shape, v.present, v.shape, call.view.rows,
                                      call.view.cols, call.delta_transposed, call.variants,
                                      call.rank);
  } else if (u.present && v.present && (u.shape.size() == 3 || v.shape.size() == 3)) {
    return "U " + ShapeString(u.shape) + " and V " + ShapeString(v.shape) +
           " are stacked per variant (3-D) but the node has no variant_ids; give variant_ids [B] "
           "or 2-D factors";
  } else {
    error = CheckLowRankShapes(u.present, u.shape, v.present, v.shape, call.view.rows,
                               call.view.cols, call.delta_transposed, call.rank);
  }
  if (!error.empty() || call.rank == 0) return error;
  if (call.a_type != call.w_type && !backend.low_rank_with_cast_view) {
    return std::string("low-rank factors with a cast view (A ") + Name(call.a_type) + ", W " +
           Name(call.w_type) + ") are not supported on this backend; give A and W one type";
  }
  // The term's first product A @ L [m, rank] is float32 scratch (CPU) or A's type (CUDA).
  if (error = CheckTensorSize("A @ U", {call.m, call.rank}, 4); !error.empty()) return error;
  return "";
}

// IclMatMul's front end: one per kernel, built when ORT creates the kernel.
class MatMulInput {
 public:
  static constexpr const char* kOp = "IclMatMul";
  using Call = MatMulCall;

  // Reads and checks the view attributes: a bad one fails here, at session creation. A W that
  // is a constant initializer is described here once (ORT keeps it, unchanged, for the
  // session's life); Read checks it every call from that description.
  static Ort::Status Create(const OrtKernelInfo* info, const Backend& backend, MatMulInput& out) {
    out.backend_ = &backend;
    int is_constant = 0;
    const OrtValue* w = nullptr;
    const OrtApi& api = Ort::GetApi();
    if (OrtStatus* s = api.KernelInfoGetConstantInput_tensor(info, 1, &is_constant, &w)) {
      api.ReleaseStatus(s);  // not known: described every call
    } else if (is_constant != 0 && w != nullptr) {
      const Ort::ConstValue value(w);
      out.constant_w_ = Describe(value);
      out.constant_w_data_ = value.GetTensorRawData();
    }
    return ReadViewAttrs(info, std::string(kOp) + backend.label, out.attrs_);
  }

  // W's data and size in bytes where W is a constant initializer of a W type; else null, 0.
  std::pair<const void*, size_t> ConstantW() const {
    ElemType type;
    int64_t count = 0, bytes = 0;
    if (!constant_w_.present || !ToElemType(constant_w_.onnx_type, type) ||
        !ElementCount(constant_w_.shape, count) || !CheckedMul(count, SizeOf(type), bytes)) {
      return {nullptr, 0};
    }
    return {constant_w_data_, static_cast<size_t>(bytes)};
  }

  // Reads and checks one call's inputs and allocates Y; an error status names what is wrong.
  Ort::Status Read(OrtKernelContext* context, MatMulCall& call) const {
    Ort::KernelContext ctx(context);
    const Ort::ConstValue a = ctx.GetInput(0), w = ctx.GetInput(1);
    const Ort::ConstValue bias = OptionalInput(ctx, 2), u = OptionalInput(ctx, 3),
                          v = OptionalInput(ctx, 4), ids = OptionalInput(ctx, 5);
    std::vector<int64_t> y_shape;
    const TensorDesc ids_desc = Describe(ids);
    // W's description from Create where this call's W is that constant (same data), else
    // read now: describing a tensor costs ORT an allocation or two per call.
    const void* w_data = w.GetTensorRawData();
    TensorDesc w_read;
    const TensorDesc& w_desc =
        constant_w_.present && w_data == constant_w_data_ ? constant_w_ : (w_read = Describe(w));
    std::string error = CheckMatMul(attrs_, *backend_, Describe(a), w_desc, Describe(bias),
                                    Describe(u), Describe(v), ids_desc, call, y_shape);
    // variant_ids is host memory on every backend (the CUDA kernel asks ORT for it there).
    if (error.empty() && ids_desc.present) {
      error = ReadVariantIds(ids.GetTensorData<int64_t>(), ids_desc.shape[0], call.variants,
                             call.variant_ids);
    }
    if (!error.empty()) return Refuse(kOp, *backend_, error);
    call.scale = attrs_.scale;
    call.a = a.GetTensorRawData();
    call.w = w_data;
    call.bias = bias ? bias.GetTensorRawData() : nullptr;
    call.u = call.rank > 0 ? u.GetTensorRawData() : nullptr;
    call.v = call.rank > 0 ? v.GetTensorRawData() : nullptr;
    call.y = ctx.GetOutput(0, y_shape).GetTensorMutableRawData();
    return Ort::Status{nullptr};
  }

 private:
  ViewAttrs attrs_;
  const Backend* backend_ = nullptr;
  TensorDesc constant_w_;                   // present: W is a constant initializer
  const void* constant_w_data_ = nullptr;  // its data
};

}  // namespace icl
