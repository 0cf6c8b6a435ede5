// libFuzzer target: a safetensors file (--init-from-hf's model.safetensors), every floating tensor read whole.
// Read as fuzz/readers.hpp's read_input reads it; a plait::Error is a refusal, anything else a finding.
#include "target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  plait::fuzz::run("safetensors", data, size);
  return 0;
}
