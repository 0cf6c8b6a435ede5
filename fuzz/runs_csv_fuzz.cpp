// libFuzzer target: a runs CSV (plait-plan evaluate --in FILE), every row read and predicted.
// Read as fuzz/readers.hpp's read_input reads it; a plait::Error is a refusal, anything else a finding.
#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  plait::fuzz::run("runs_csv", data, size);
  return 0;
}
