#include "cpu/block_quant_rows.h"

#include <algorithm>

#include "cpu/element.h"

namespace icl::cpu {
namespace {

// One row in the output type T; T(float) rounds to nearest even, like ORT's static_cast<T2>.
template <typename T>
void DequantizeRowAs(const BlockQuantTable& t, int64_t row, T* out) {
  const BlockQuantGeometry& g = t.geometry;
  const uint8_t* data = t.b + row * g.row_bytes;
  const T* scales = static_cast<const T*>(t.scales) + row * g.n_blocks;
  const uint8_t* zero_points =
      t.zero_points == nullptr ? nullptr : t.zero_points + row * g.zero_point_row_bytes;
  for (int64_t block = 0; block < g.n_blocks; ++block) {
    const float scale = ToFloat(scales[block]);
    const int32_t zero_point = ZeroPointAt(zero_points, block, g.bits);
    const int64_t begin = block * g.block_size;
    const int64_t end = std::min(g.k, begin + g.block_size);
    const uint8_t* block_data = data + block * g.blob;
    if (g.bits == 8) {
      for (int64_t k = begin; k < end; ++k) {
        out[k] = T(Dequantize(block_data[k - begin], zero_point, scale));
      }
      continue;
    }
    for (int64_t k = begin; k < end; ++k) {
      out[k] = T(Dequantize(QuantAt(block_data, k - begin, 4), zero_point, scale));
    }
  }
}

}  // namespace

void DequantizeRow(const BlockQuantTable& table, int64_t row, void* out) {
  switch (table.type) {
    case ElemType::kFloat: DequantizeRowAs(table, row, static_cast<float*>(out)); return;
    case ElemType::kFloat16:
      DequantizeRowAs(table, row, static_cast<Ort::Float16_t*>(out));
      return;
    case ElemType::kBFloat16:
      DequantizeRowAs(table, row, static_cast<Ort::BFloat16_t*>(out));
      return;
  }
}

}  // namespace icl::cpu
