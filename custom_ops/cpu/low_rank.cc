// The rank is small (a LoRA's 4..64): every loop keeps the long, contiguous dimension innermost
// so that the compiler vectorises it, and nothing larger than a row of factors is copied.
#include "cpu/low_rank.h"

#include "common/low_rank.h"
#include "cpu/convert.h"


namespace icl::cpu {
namespace {

// The factor's data as float32: in place, or widened into `widened`.
const float* AsFloat(const Ort::ConstValue& factor, ElemType type, std::vector<float>& widened) {
  if (type == ElemType::kFloat) return factor.GetTensorData<float>();
  const size_t count = factor.GetTensorTypeAndShapeInfo().GetElementCount();
  widened.resize(count);
  ToFloat(type, factor.GetTensorRawData(), widened.data(), static_cast<int64_t>(count));
  return widened.data();
}

}  // namespace

std::string ReadLowRank(const Ort::ConstValue& u, const Ort::ConstValue& v, ElemType w_type,
                        const ViewGeometry& view, bool transposed, std::vector<float>& u_float,
                        std::vector<float>& v_float, LowRankTerm& term) {
  const bool has_u = u != nullptr, has_v = v != nullptr;
  std::vector<int64_t> u_shape, v_shape;
  if (has_u) u_shape = u.GetTensorTypeAndShapeInfo().GetShape();
  if (has_v) v_shape = v.GetTensorTypeAndShapeInfo().GetShape();
  int64_t rank = 0;
  std::string problem = CheckLowRankShapes(has_u, u_shape, has_v, v_shape, view.rows, view.cols,
                                           transposed, rank);
  if (!problem.empty() || rank == 0) return problem;
  term.u = AsFloat(u, w_type, u_float);
  term.v = AsFloat(v, w_type, v_float);
  term.p = view.rows;
  term.q = view.cols;
  term.rank = rank;
  term.transposed = transposed;
  return {};
}


void LowRankLeft(const LowRankTerm& f, const float* a, int64_t m, float* t) {
  const int64_t r = f.rank, p = f.p;
  for (int64_t i = 0; i < m; ++i) {
    const float* a_row = a + i * p;
    float* t_row = t + i * r;
    for (int64_t j = 0; j < r; ++j) t_row[j] = 0.0f;
    if (f.transposed) {  // L[k, j] = V[j, k]: a dot product of two contiguous rows
      for (int64_t j = 0; j < r; ++j) {
        const float* v_row = f.v + j * p;
        float sum = 0.0f;
        for (int64_t k = 0; k < p; ++k) sum += a_row[k] * v_row[k];
        t_row[j] = sum;
      }
    } else {  // L[k, j] = U[k, j]
      for (int64_t k = 0; k < p; ++k) {
        const float coefficient = a_row[k];
        const float* u_row = f.u + k * r;
        for (int64_t j = 0; j < r; ++j) t_row[j] += coefficient * u_row[j];
      }
    }
  }
}

void LowRankAddColumns(const LowRankTerm& f, const float* t, int64_t m, int64_t q0, int64_t nc,
                       float* out, int64_t ldo) {
  const int64_t r = f.rank;
  if (!f.transposed) {  // R[j, c] = V[j, c]: rows of V are contiguous
    for (int64_t i = 0; i < m; ++i) {
      float* row = out + i * ldo;
      for (int64_t j = 0; j < r; ++j) {
        const float coefficient = t[i * r + j];
        const float* v_row = f.v + j * f.q + q0;
        for (int64_t c = 0; c < nc; ++c) row[c] += coefficient * v_row[c];
      }
    }
    return;
  }
  // R[j, c] = U[c, j]: column c of R is row c of U, so each output is a dot product of length r.
  for (int64_t i = 0; i < m; ++i) {
    float* row = out + i * ldo;
    const float* t_row = t + i * r;
    for (int64_t c = 0; c < nc; ++c) {
      const float* u_row = f.u + (q0 + c) * r;
      float sum = 0.0f;
      for (int64_t j = 0; j < r; ++j) sum += t_row[j] * u_row[j];
      row[c] += sum;
    }
  }
}

void LowRankAddRow(const LowRankTerm& f, int64_t row, float* out) {
  const int64_t r = f.rank;
  if (!f.transposed) {  // delta[row, :] = U[row, :] @ V
    for (int64_t j = 0; j < r; ++j) {
      const float coefficient = f.u[row * r + j];
      const float* v_row = f.v + j * f.q;
      for (int64_t c = 0; c < f.q; ++c) out[c] += coefficient * v_row[c];
    }
    return;
  }
  // delta[row, c] = sum_j U[c, j] * V[j, row]
  for (int64_t c = 0; c < f.q; ++c) {
    const float* u_row = f.u + c * r;
    float sum = 0.0f;
    for (int64_t j = 0; j < r; ++j) sum += u_row[j] * f.v[j * f.p + row];
    out[c] += sum;
  }
}

}  // namespace icl::cpu
