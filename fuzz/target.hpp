// What each libFuzzer target shares: a scratch directory of its own (the readers take paths), the input written
// there, and the one way a reader may refuse it (plait::Error). Any other exception escapes and libFuzzer reports it.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "readers.hpp"

namespace plait::fuzz {

// /tmp/plait-fuzz-PID (or under $TMPDIR), removed at exit.
inline const std::string& scratch() {
  // Never destroyed: the exit handler that removes it runs after static destructors would have.
  static const std::string* dir = [] {
    const auto d = std::filesystem::temp_directory_path() / ("plait-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch(), ec);
    });
    return new std::string(d.string());
  }();
  return *dir;
}

// One input of `target`, read in the scratch directory; a plait::Error is a refusal, which is fine.
inline void run(const std::string& target, const std::uint8_t* data, std::size_t size) {
  try {
    read_input(target, Bytes(reinterpret_cast<const char*>(data), size), scratch());
  } catch (const Error&) {
  }
}

}  // namespace plait::fuzz
