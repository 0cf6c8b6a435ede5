// Checked errors: every failure plait reports is a plait::Error whose message says what went wrong and, where it
// can, what to change. PLAIT_CHECK is for conditions a user can cause (bad shapes, bad flags, bad files).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace plait::core {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class First, class... Rest>
void append(std::ostringstream& out, const First& first, const Rest&... rest) {
  out << first;
  append(out, rest...);
}
}  // namespace detail

// Builds a message from any streamable parts: fail("expected ", n, " tokens, got ", m).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream out;
  detail::append(out, parts...);
  throw Error(out.str());
}

}  // namespace plait::core

namespace plait {
using core::Error;
}

// PLAIT_CHECK(condition, message parts...): throws plait::Error with the parts when the condition is false.
#define PLAIT_CHECK(condition, ...)            \
  do {                                         \
    if (!(condition)) ::plait::core::fail(__VA_ARGS__); \
  } while (0)
