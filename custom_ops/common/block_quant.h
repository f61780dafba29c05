// IclGatherBlockQuantized's layout and arithmetic (docs/operators.md), shared by every backend.
//
// The table is stored as ONNX Runtime's MatMulNBits stores B: uint8 [N, n_blocks, blob] with
// n_blocks = ceil(K / block_size) and blob = block_size * bits / 8; inside a row, element k sits
// in block k / block_size, elements of one byte lowest bits first. One scale per block
// (N * n_blocks), optional uint8 zero points packed the same way, each row taking
// ceil(n_blocks * bits / 8) bytes (absent: 2^(bits-1)). The value is
// float(q - zero_point) * float(scale), rounded once to the output type: the arithmetic of ORT's
// GatherBlockQuantized, so both agree bit for bit.
//
// Nothing here touches the ORT API: the attribute and shape checks run on the host for both
// backends (through common/gather_block_quantized_input.h), and the element accessors compile
// for host and device alike.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checked_math.h"

#if defined(__CUDACC__)
#define ICL_HOST_DEVICE __host__ __device__
#else
#define ICL_HOST_DEVICE
#endif

namespace icl {

// The node attributes: K (the logical row length), bits (4 or 8) and block_size.
struct BlockQuantAttrs {
  int64_t k = 0;
  int64_t bits = 4;
  int64_t block_size = 32;
};

// The resolved geometry of one call.
struct BlockQuantGeometry {
  int64_t n = 0;          // rows (the vocabulary of a tied head)
  int64_t k = 0;          // output row length
  int bits = 4;
  int64_t block_size = 0;
  int64_t n_blocks = 0;   // blocks per row
  int64_t blob = 0;       // bytes per block
  int64_t row_bytes = 0;  // n_blocks * blob
  int64_t zero_point_row_bytes = 0;  // ceil(n_blocks * bits / 8)
};

// Returns why the attributes are invalid, or "" (checked once, when the kernel is created):
// besides each value's range, a row padded to whole blocks (ceil(K / block_size) * block_size
// elements), its bytes in B and its bits of zero points must be counts int64 holds.
inline std::string CheckBlockQuantAttrs(const BlockQuantAttrs& a) {
  if (a.bits != 4 && a.bits != 8) return "bits must be 4 or 8, got " + std::to_string(a.bits);
  if (a.block_size < 16 || (a.block_size & (a.block_size - 1)) != 0) {
    return "block_size must be a power of 2 and at least 16, got " + std::to_string(a.block_size);
  }
  if (a.k < 1) return "K must be at least 1, got " + std::to_string(a.k);
  const int64_t n_blocks = a.k / a.block_size + (a.k % a.block_size != 0);  // no k + block_size
  int64_t padded = 0, row_bytes = 0, zero_point_bits = 0;
  if (!CheckedMul(n_blocks, a.block_size, padded) ||
      !CheckedMul(n_blocks, a.block_size / 8 * a.bits, row_bytes) ||
      !CheckedMul(n_blocks, a.bits, zero_point_bits)) {
    return "K=" + std::to_string(a.k) + " and block_size=" + std::to_string(a.block_size) +
           " make rows of more than 2^63-1 elements";
  }
  return "";
}

// Resolves the geometry from B's shape and the element counts of scales and zero_points
// (zero_point_count < 0: absent); returns "" or why the inputs do not fit the attributes. Every
// product is checked: K up to 2^63-1 and any B shape give a message, never a wrapped size.
inline std::string ResolveBlockQuant(const BlockQuantAttrs& a, const std::vector<int64_t>& b_shape,
                                     int64_t scale_count, int64_t zero_point_count,
                                     BlockQuantGeometry& g) {
  if (std::string problem = CheckBlockQuantAttrs(a); !problem.empty()) return problem;
  g.k = a.k;
  g.bits = static_cast<int>(a.bits);
  g.block_size = a.block_size;
  // No product below overflows: CheckBlockQuantAttrs checked the row sizes.
  g.n_blocks = a.k / a.block_size + (a.k % a.block_size != 0);  // ceil, without k + block_size
  g.blob = a.block_size / 8 * a.bits;                            // block_size is a multiple of 8
  g.row_bytes = g.n_blocks * g.blob;
  const int64_t zero_point_bits = g.n_blocks * a.bits;
  g.zero_point_row_bytes = zero_point_bits / 8 + (zero_point_bits % 8 != 0);
  if (b_shape.size() != 3 || b_shape[0] < 0 || b_shape[1] != g.n_blocks || b_shape[2] != g.blob) {
    return "B must have shape [N, " + std::to_string(g.n_blocks) + ", " + std::to_string(g.blob) +
           "] for K=" + std::to_string(a.k) + ", bits=" + std::to_string(a.bits) +
           ", block_size=" + std::to_string(a.block_size) + ", got " + ShapeString(b_shape);
  }
  g.n = b_shape[0];
  int64_t expected_scales = 0, expected_zero_points = 0;
  if (!CheckedMul(g.n, g.n_blocks, expected_scales) ||
      !CheckedMul(g.n, g.zero_point_row_bytes, expected_zero_points)) {
    return "B " + ShapeString(b_shape) + " has more blocks than int64 counts";
  }
  if (scale_count != expected_scales) {
    return "scales must have N * n_blocks = " + std::to_string(expected_scales) +
           " elements, got " + std::to_string(scale_count);
  }
  if (zero_point_count >= 0 && zero_point_count != expected_zero_points) {
    return "zero_points must have N * ceil(n_blocks * bits / 8) = " +
           std::to_string(expected_zero_points) + " elements, got " +
           std::to_string(zero_point_count);
  }
  return "";
}

// Element k of one row of B (row_bytes long).
ICL_HOST_DEVICE inline int32_t QuantAt(const uint8_t* row, int64_t k, int bits) {
  if (bits == 8) return row[k];
  const uint8_t byte = row[k >> 1];
  return (k & 1) ? (byte >> 4) : (byte & 0x0F);
}

// The zero point of block `block` of one row (zero_points row, or nullptr for the default).
ICL_HOST_DEVICE inline int32_t ZeroPointAt(const uint8_t* zero_point_row, int64_t block,
                                           int bits) {
  if (zero_point_row == nullptr) return 1 << (bits - 1);
  return QuantAt(zero_point_row, block, bits);
}

// The dequantized value in float32, before rounding to the output type.
ICL_HOST_DEVICE inline float Dequantize(int32_t q, int32_t zero_point, float scale) {
  return static_cast<float>(q - zero_point) * scale;
}

}  // namespace icl
