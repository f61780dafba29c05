// The view attributes of the ICL operators (docs/operators.md), shared by every backend:
// reading them from a node, the one check of which values are well formed, and the geometry
// of view(W) in the stored W. The Python side of the same contract is icl_onnx/views.py.
#pragma once

#include <cstdint>
#include <string>

#include "common/checked_math.h"
#include "common/elem_type.h"
#include "onnxruntime_cxx_api.h"

namespace icl {

// Attributes that describe view(W) = scale * cast(transpose?(slice(W))).
struct ViewAttrs {
  int64_t transpose = 0;
  int64_t slice_axis = 0;
  int64_t slice_start = 0;
  int64_t slice_size = -1;
  float scale = 1.0f;
  int64_t output_dtype = 0;  // IclGather only: ONNX element type of Y, 0 = W's type.
  int64_t delta_transpose = 0;  // the low-rank term is (U @ V)^T (common/low_rank.h).
};

// What is wrong with attributes that no shape of W could make valid; empty when they are well
// formed. The only such check: every kernel's Create reaches it through ReadViewAttrs, and the
// CUDA harness through the same function.
inline std::string ViewAttrsError(const ViewAttrs& a) {
  if (a.transpose != 0 && a.transpose != 1) {
    return "transpose must be 0 or 1, got " + std::to_string(a.transpose);
  }
  if (a.slice_axis != 0 && a.slice_axis != 1) {
    return "slice_axis must be 0 or 1, got " + std::to_string(a.slice_axis);
  }
  if (a.slice_start < 0) return "slice_start must be >= 0, got " + std::to_string(a.slice_start);
  if (a.slice_size < -1) {
    return "slice_size must be >= 0, or -1 for the rest of the axis, got " +
           std::to_string(a.slice_size);
  }
  if (a.delta_transpose != 0 && a.delta_transpose != 1) {
    return "delta_transpose must be 0 or 1, got " + std::to_string(a.delta_transpose);
  }
  ElemType y_type;
  if (a.output_dtype != 0 && !ToElemType(static_cast<int>(a.output_dtype), y_type)) {
    return "output_dtype must be 0, 1 (float), 10 (float16) or 16 (bfloat16), got " +
           std::to_string(a.output_dtype);
  }
  return {};
}

// Reads a node's view attributes (absent ones keep their defaults) and checks them with
// ViewAttrsError. `op` prefixes the error message (e.g. "IclMatMul (CUDA)").
inline Ort::Status ReadViewAttrs(const OrtKernelInfo* info, const std::string& op,
                                 ViewAttrs& out) {
  const OrtApi& api = Ort::GetApi();
  auto get_int = [&](const char* name, int64_t& value) {
    int64_t v = 0;
    if (OrtStatus* s = api.KernelInfoGetAttribute_int64(info, name, &v)) {
      api.ReleaseStatus(s);  // absent: keep the default
    } else {
      value = v;
    }
  };
  out = ViewAttrs{};
  get_int("transpose", out.transpose);
  get_int("slice_axis", out.slice_axis);
  get_int("slice_start", out.slice_start);
  get_int("slice_size", out.slice_size);
  get_int("output_dtype", out.output_dtype);
  get_int("delta_transpose", out.delta_transpose);
  float f = 1.0f;
  if (OrtStatus* s = api.KernelInfoGetAttribute_float(info, "scale", &f)) {
    api.ReleaseStatus(s);
  } else {
    out.scale = f;
  }
  if (std::string error = ViewAttrsError(out); !error.empty()) {
    return Ort::Status((op + ": " + error).c_str(), ORT_INVALID_ARGUMENT);
  }
  return Ort::Status{nullptr};
}

// Where view(W) lies in the stored row-major W[R, C], in elements.
// view(W)[i, j] = scale * W_flat[offset + (transposed ? j * ld + i : i * ld + j)].
struct ViewGeometry {
  int64_t rows = 0;    // rows of view(W)
  int64_t cols = 0;    // cols of view(W)
  int64_t offset = 0;  // element offset of the slice's first element
  int64_t ld = 0;      // leading dimension of the stored W (its column count C)
  bool transposed = false;
};

// Resolves the geometry of view(W) for a stored W of shape [R, C]; returns false and fills
// `error` when the attributes are malformed or do not fit the shape. Every comparison is arranged
// so that no attribute value, up to 2^63-1, can overflow (slice_start + size is never formed).
inline bool ResolveView(const ViewAttrs& a, int64_t R, int64_t C, ViewGeometry& g,
                        std::string& error) {
  if (error = ViewAttrsError(a); !error.empty()) return false;
  int64_t elements = 0;
  if (!CheckedMul(R, C, elements)) {  // ElementCount of [R, C], without building a vector
    error = "W " + ShapeString({R, C}) + " has a negative dimension or too many elements";
    return false;
  }
  const int64_t axis_len = a.slice_axis == 0 ? R : C;
  // slice_start >= 0 and slice_size >= -1 here (ViewAttrsError).
  if (a.slice_start > axis_len || a.slice_size > axis_len - a.slice_start) {
    error = "the slice [" + std::to_string(a.slice_start) + ", +" +
            (a.slice_size < 0 ? std::string("rest") : std::to_string(a.slice_size)) +
            ") is out of range for axis " + std::to_string(a.slice_axis) + " of W " +
            ShapeString({R, C});
    return false;
  }
  const int64_t size = a.slice_size < 0 ? axis_len - a.slice_start : a.slice_size;
  int64_t sr = R, sc = C;  // shape of the slice
  if (a.slice_axis == 0) {
    sr = size;
    g.offset = a.slice_start * C;  // <= R * C, which fits (checked above)
  } else {
    sc = size;
    g.offset = a.slice_start;
  }
  g.ld = C;
  g.transposed = a.transpose != 0;
  g.rows = g.transposed ? sc : sr;
  g.cols = g.transposed ? sr : sc;
  return true;
}

}  // namespace icl
