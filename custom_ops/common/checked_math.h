// Overflow-safe arithmetic on the sizes a model supplies (shapes, attributes, indices): every
// product or sum of such values goes through these, so that no value, however large, can wrap
// around and pass a check. Free of ORT and CUDA headers; host code only.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace icl {

inline constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// out = a * b for a, b >= 0; false (out untouched) for a negative operand or a product past
// int64.
inline bool CheckedMul(int64_t a, int64_t b, int64_t& out) {
  if (a < 0 || b < 0 || (a != 0 && b > kInt64Max / a)) return false;
  out = a * b;
  return true;
}

// out = a + b for a, b >= 0; false (out untouched) for a negative operand or a sum past int64.
inline bool CheckedAdd(int64_t a, int64_t b, int64_t& out) {
  if (a < 0 || b < 0 || b > kInt64Max - a) return false;
  out = a + b;
  return true;
}

// "[d0, d1, ...]".
inline std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The element count of a tensor of `shape` (1 for a scalar); false for a negative dimension or
// a count past int64. A zero dimension gives 0 whatever the others are (an empty tensor).
inline bool ElementCount(const std::vector<int64_t>& shape, int64_t& count) {
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) return false;
    empty = empty || d == 0;
  }
  if (empty) {
    count = 0;
    return true;
  }
  for (int64_t d : shape) {
    if (!CheckedMul(n, d, n)) return false;
  }
  count = n;
  return true;
}

// Whether a tensor of `shape` with `element_size`-byte elements has a byte size that int64 (and
// so size_t) holds; "" or what is wrong with `name`'s shape.
inline std::string CheckTensorSize(const char* name, const std::vector<int64_t>& shape,
                                   int64_t element_size) {
  int64_t count = 0, bytes = 0;
  for (int64_t d : shape) {
    if (d < 0) return std::string(name) + " " + ShapeString(shape) + " has a negative dimension";
  }
  if (!ElementCount(shape, count) || !CheckedMul(count, element_size, bytes)) {
    return std::string(name) + " " + ShapeString(shape) + " would exceed 2^63-1 bytes";
  }
  return "";
}

}  // namespace icl
