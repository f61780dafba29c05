// IclGatherBlockQuantized's CPU arithmetic: dequantizes selected rows of a MatMulNBits table
// (common/block_quant.h). No ORT API here: the front end (common/gather_block_quantized_input.h)
// checks the inputs and normalises the indices, the kernel splits the rows over ORT's threads.
#pragma once

#include <cstdint>

#include "common/block_quant.h"
#include "common/elem_type.h"

namespace icl::cpu {

// The inputs of one call, resolved: `scales` and Y share the element type `type`.
struct BlockQuantTable {
  BlockQuantGeometry geometry;
  const uint8_t* b = nullptr;            // [n, row_bytes]
  const void* scales = nullptr;          // [n, n_blocks] of `type`
  const uint8_t* zero_points = nullptr;  // [n, zero_point_row_bytes], or nullptr
  ElemType type = ElemType::kFloat;
};

// Writes row `row` of the dequantized table (K elements of the table's type) to `out`.
void DequantizeRow(const BlockQuantTable& table, int64_t row, void* out);

}  // namespace icl::cpu
