// The view attributes of the ICL operators (docs/operators.md), shared by every backend.
#pragma once

#include <cstdint>
#include <string>

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

  // Reads the attributes of a node; absent attributes keep their defaults.
  static ViewAttrs FromKernelInfo(const OrtKernelInfo* info) {
    ViewAttrs a;
    auto get_int = [&](const char* name, int64_t& out) {
      int64_t v = 0;
      OrtStatus* s = Ort::GetApi().KernelInfoGetAttribute_int64(info, name, &v);
      if (s == nullptr) out = v; else Ort::GetApi().ReleaseStatus(s);
    };
    get_int("transpose", a.transpose);
    get_int("slice_axis", a.slice_axis);
    get_int("slice_start", a.slice_start);
    get_int("slice_size", a.slice_size);
    get_int("output_dtype", a.output_dtype);
    float f = 1.0f;
    OrtStatus* s = Ort::GetApi().KernelInfoGetAttribute_float(info, "scale", &f);
    if (s == nullptr) a.scale = f; else Ort::GetApi().ReleaseStatus(s);
    return a;
  }
};

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
// `error` when the attributes do not fit the shape.
inline bool ResolveView(const ViewAttrs& a, int64_t R, int64_t C, ViewGeometry& g,
                        std::string& error) {
  if (a.slice_axis != 0 && a.slice_axis != 1) {
    error = "slice_axis must be 0 or 1";
    return false;
  }
  const int64_t axis_len = a.slice_axis == 0 ? R : C;
  const int64_t size = a.slice_size < 0 ? axis_len - a.slice_start : a.slice_size;
  if (a.slice_start < 0 || size < 0 || a.slice_start + size > axis_len) {
    error = "slice [" + std::to_string(a.slice_start) + ", +" + std::to_string(size) +
            ") out of range for an axis of " + std::to_string(axis_len);
    return false;
  }
  int64_t sr = R, sc = C;  // shape of the slice
  if (a.slice_axis == 0) {
    sr = size;
    g.offset = a.slice_start * C;
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
