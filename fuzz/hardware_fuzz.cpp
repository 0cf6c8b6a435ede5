// libFuzzer target: a hardware JSON file (plait-plan --hardware FILE).
// Read as fuzz/readers.hpp's read_input reads it; a plait::Error is a refusal, anything else a finding.
#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  plait::fuzz::run("hardware", data, size);
  return 0;
}
