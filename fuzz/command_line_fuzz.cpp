// libFuzzer target: plait-train's command line: the first byte picks what the rest is (even: the arguments, one a line; odd: a --config file).
// Read as fuzz/readers.hpp's read_input reads it; a plait::Error is a refusal, anything else a finding.
#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  plait::fuzz::run("command_line", data, size);
  return 0;
}
