// Element types: fp64 and fp32 are the C++ types; bf16 is a 16-bit storage type (the top half of an fp32) with
// round-to-nearest-even conversion, so that host code can hold and check the values a GPU computes in bf16.
#pragma once

#include <bit>
#include <cstdint>
#include <string_view>

namespace plait::core {

struct bf16 {
  std::uint16_t bits = 0;

  constexpr bf16() = default;
  constexpr explicit bf16(float value) : bits(round_to_bits(value)) {}
  constexpr operator float() const { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

  static constexpr bf16 from_bits(std::uint16_t raw) {
    bf16 result;
    result.bits = raw;
    return result;
  }

  // Round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then truncate. NaN stays a (quiet) NaN,
  // and values that round past the largest finite bf16 become infinity, as IEEE rounding says.
  static constexpr std::uint16_t round_to_bits(float value) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
    const std::uint32_t lowest_kept = (u >> 16) & 1u;
    return static_cast<std::uint16_t>((u + 0x7FFFu + lowest_kept) >> 16);
  }
};

enum class DType { fp64, fp32, bf16 };

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<double>() { return DType::fp64; }
template <> constexpr DType dtype_of<float>() { return DType::fp32; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }

constexpr std::string_view name(DType type) {
  switch (type) {
    case DType::fp64: return "fp64";
    case DType::fp32: return "fp32";
    case DType::bf16: return "bf16";
  }
  return "?";
}

}  // namespace plait::core

namespace plait {
using core::bf16;
using core::DType;
}  // namespace plait
