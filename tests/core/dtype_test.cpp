// bf16 storage: exact on representable values, round-to-nearest-even otherwise, NaN and overflow as IEEE says.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "plait/core/dtype.hpp"

using plait::bf16;

TEST_CASE("bf16 round-trips every finite representable value exactly", "[core][bf16]") {
  int checked = 0;
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const bf16 b = bf16::from_bits(static_cast<std::uint16_t>(bits));
    const float f = static_cast<float>(b);
    if (std::isnan(f)) continue;
    REQUIRE(bf16(f).bits == b.bits);
    ++checked;
  }
  CHECK(checked == 65536 - 2 * 127);  // every pattern but the NaNs (exponent all ones, mantissa non-zero)
}

TEST_CASE("bf16 rounds to nearest with ties to even", "[core][bf16]") {
  const auto from = [](std::uint32_t u) { return std::bit_cast<float>(u); };
  // 1.0 is 0x3F800000; one bf16 ulp at 1.0 is 0x10000 in fp32 bits.
  CHECK(bf16(from(0x3F800000u + 0x7FFFu)).bits == 0x3F80u);  // below the half: down
  CHECK(bf16(from(0x3F800000u + 0x8001u)).bits == 0x3F81u);  // above the half: up
  CHECK(bf16(from(0x3F800000u + 0x8000u)).bits == 0x3F80u);  // tie, kept bit even (0): stays
  CHECK(bf16(from(0x3F810000u + 0x8000u)).bits == 0x3F82u);  // tie, kept bit odd (1): up to even
  CHECK(bf16(-1.0f).bits == 0xBF80u);
  CHECK(static_cast<float>(bf16(3.140625f)) == 3.140625f);   // representable: exact
  CHECK(std::abs(static_cast<float>(bf16(0.1f)) - 0.1f) <= 0.1f * 0x1.0p-8f);
}

TEST_CASE("bf16 keeps NaN a NaN and overflows to infinity", "[core][bf16]") {
  CHECK(std::isnan(static_cast<float>(bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(static_cast<float>(bf16(std::numeric_limits<float>::max()))));
  CHECK(std::isinf(static_cast<float>(bf16(std::numeric_limits<float>::infinity()))));
}
