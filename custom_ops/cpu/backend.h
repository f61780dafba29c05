// What the CPU kernels compute, as the shared input front ends (common/input.h) take it.
#pragma once

#include "common/input.h"

namespace icl::cpu {

inline constexpr Backend kBackend{/*label=*/"", /*low_rank_with_cast_view=*/true,
                                  /*gather_indices_on_host=*/true};

}  // namespace icl::cpu
