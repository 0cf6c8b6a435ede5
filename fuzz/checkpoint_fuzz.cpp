// libFuzzer target: checkpoints: the first byte picks the file the rest is (metadata.json beside a valid rank file, the rank file with the metadata a save writes for it, or a file of plait's first format).
// Read as fuzz/readers.hpp's read_input reads it; a plait::Error is a refusal, anything else a finding.
#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  plait::fuzz::run("checkpoint", data, size);
  return 0;
}
