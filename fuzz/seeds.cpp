// Writes the valid inputs of each fuzz target into DIR/<target>/ (libFuzzer's starting corpus): plait-fuzz-seeds DIR.
#include <filesystem>
#include <iostream>

#include "readers.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: plait-fuzz-seeds DIR\n";
    return 2;
  }
  const std::filesystem::path root = argv[1];
  std::filesystem::create_directories(root);
  for (const auto& [target, inputs] : plait::fuzz::seed_inputs(root.string())) {
    std::filesystem::create_directories(root / target);
    for (std::size_t i = 0; i < inputs.size(); ++i)
      plait::fuzz::write_file((root / target / ("seed-" + std::to_string(i))).string(), inputs[i]);
  }
  std::filesystem::remove(root / "seed.safetensors");
  return 0;
}
