// Checked errors: PLAIT_CHECK throws a plait::Error whose message is its parts joined, evaluates its condition once,
// builds the message only on failure, and reads as one statement.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

#include "plait/core/error.hpp"

namespace {
void check_tokens(int expected, double got) {
  PLAIT_CHECK(expected == got, "expected ", expected, " tokens, got ", got);
}
}  // namespace

TEST_CASE("PLAIT_CHECK throws a plait::Error with its parts joined", "[core][error]") {
  CHECK_NOTHROW(check_tokens(3, 3.0));
  CHECK_THROWS_AS(check_tokens(3, 4.5), plait::Error);
  CHECK_THROWS_WITH(check_tokens(3, 4.5), "expected 3 tokens, got 4.5");
  try {
    check_tokens(2, 1.0);
    FAIL("no exception");
  } catch (const std::runtime_error& e) {  // a plait::Error is a std::runtime_error
    CHECK(std::string(e.what()) == "expected 2 tokens, got 1");
  }
}

TEST_CASE("PLAIT_CHECK takes any streamable parts", "[core][error]") {
  const std::string file = "data.txt";
  // PLAIT_CHECK is a statement: a lambda makes it an expression for Catch.
  CHECK_THROWS_WITH([&] { PLAIT_CHECK(false, "cannot open '", file, "' (", 'x', ", ", 2u, ", ", -7L, ")"); }(),
                    "cannot open 'data.txt' (x, 2, -7)");
  CHECK_THROWS_WITH([] { PLAIT_CHECK(1 > 2, "a single message"); }(), "a single message");
}

TEST_CASE("PLAIT_CHECK evaluates its condition once and its message only on failure", "[core][error]") {
  int conditions = 0, messages = 0;
  auto condition = [&](bool value) {
    ++conditions;
    return value;
  };
  auto message = [&] {
    ++messages;
    return "built";
  };
  PLAIT_CHECK(condition(true), message());
  CHECK(conditions == 1);
  CHECK(messages == 0);
  CHECK_THROWS_WITH([&] { PLAIT_CHECK(condition(false), message()); }(), "built");
  CHECK(conditions == 2);
  CHECK(messages == 1);
}

TEST_CASE("PLAIT_CHECK is one statement", "[core][error]") {
  bool reached = false;
  // Without braces: an if/else around the macro must bind as written (the do { } while (0) form).
  if (reached)
    PLAIT_CHECK(false, "not taken");
  else
    reached = true;
  CHECK(reached);
}

TEST_CASE("fail throws with the same message format", "[core][error]") {
  CHECK_THROWS_AS(plait::core::fail("x"), plait::Error);
  CHECK_THROWS_WITH(plait::core::fail("layer ", 3, " of ", 4, ": ", 0.5), "layer 3 of 4: 0.5");
}
