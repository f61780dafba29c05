#include "cpu/matmul_kernel.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "cpu/backend.h"
#include "cpu/convert.h"
#include "cpu/matmul.h"
#include "cpu/parallel.h"

namespace icl::cpu {
namespace {

// The batch rows of `call` grouped by variant (ascending ids; each group's batch rows in order).
std::vector<LowRankRows> GroupByVariant(const MatMulCall& call, std::vector<int64_t>& ids) {
  const std::vector<int64_t>& of = call.variant_ids;
  std::vector<int64_t> order(of.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return of[x] < of[y]; });
  std::vector<LowRankRows> groups;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || of[order[i]] != of[order[i - 1]]) {
      groups.push_back({{}, call.rows_per_batch});
      ids.push_back(of[order[i]]);
    }
    groups.back().blocks.push_back(order[i]);
  }
  return groups;
}

}  // namespace

Ort::Status MatMulKernel::Create(const OrtKernelInfo* info, std::unique_ptr<MatMulKernel>& out) {
  MatMulInput input;
  if (Ort::Status status = MatMulInput::Create(info, kBackend, input); !status.IsOK()) {
    return status;
  }
  out.reset(new MatMulKernel(input));
  // W is read in place on every call: huge pages spare those reads most TLB misses.
  if (const auto [w, bytes] = input.ConstantW(); w != nullptr) out->huge_pages_.Request(w, bytes);
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
  std::vector<float> a_float, bias_float;
  p.a = AsFloat(call.a, call.m * call.k, call.a_type, a_float);  // A's element count: it fits
  if (call.bias != nullptr) p.bias = AsFloat(call.bias, call.n, call.a_type, bias_float);
  if (call.rank == 0 || call.m == 0) return RunMatMul(context, p);
  // One low-rank group of all rows, or one per variant that variant_ids names (the factors of
  // the others are never read).
  std::vector<int64_t> variants;
  std::vector<LowRankRows> rows;
  if (call.variants == 0) {
    variants = {0};
    rows = {{{0}, call.m}};
  } else {
    rows = GroupByVariant(call, variants);
  }
  const int64_t groups = static_cast<int64_t>(rows.size());
  p.deltas.resize(rows.size());
  std::vector<std::vector<float>> u_float(rows.size()), v_float(rows.size());
  auto term = [&](int64_t g) {
    const void* u = Advance(call.u, variants[g] * call.VariantUElements(), call.w_type);
    const void* v = Advance(call.v, variants[g] * call.VariantVElements(), call.w_type);
    p.deltas[g].term = ToLowRankTerm(u, v, call.w_type, call.view, call.rank,
                                     call.delta_transposed, u_float[g], v_float[g]);
    p.deltas[g].rows = std::move(rows[g]);
  };
  // 16-bit factors are widened in parallel; float32 ones are only pointed at.
  if (call.w_type != ElemType::kFloat) {
    if (Ort::Status status = ParallelFor(context, groups, term); !status.IsOK()) return status;
  } else {
    for (int64_t g = 0; g < groups; ++g) term(g);
  }
  return RunMatMul(context, p);
}

}  // namespace icl::cpu
