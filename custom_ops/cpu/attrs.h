// Checks of view attributes that do not depend on W's shape, shared by the CPU kernels.
#pragma once

#include <string>

#include "common/view.h"

namespace icl::cpu {

// Returns an empty string when the attributes are well formed, else what is wrong.
inline std::string CheckViewAttrs(const ViewAttrs& a) {
  if (a.transpose != 0 && a.transpose != 1) return "transpose must be 0 or 1";
  if (a.slice_axis != 0 && a.slice_axis != 1) return "slice_axis must be 0 or 1";
  if (a.slice_start < 0) return "slice_start must be >= 0";
  if (a.slice_size < -1) return "slice_size must be >= 0, or -1 for the rest of the axis";
  return {};
}

}  // namespace icl::cpu
