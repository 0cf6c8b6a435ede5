// Where a test writes its files: a folder of this build tree (PLAIT_TEST_SCRATCH, which tests/CMakeLists.txt sets to
// <build>/tests/scratch), so that two suites running at once on one machine, from two clones or two build trees, do
// not write and delete each other's files; the system's temporary folder where the definition is missing. The same
// path on every MPI rank of a run, so a file one rank writes is the one the others read.
#pragma once

#include <filesystem>
#include <string>

namespace plait::test {

inline std::filesystem::path scratch_dir() {
#ifdef PLAIT_TEST_SCRATCH
  const std::filesystem::path dir = PLAIT_TEST_SCRATCH;
#else
  const std::filesystem::path dir = std::filesystem::temp_directory_path();
#endif
  std::filesystem::create_directories(dir);  // concurrent ranks: an existing folder is no error
  return dir;
}

inline std::string scratch_path(const std::string& name) { return (scratch_dir() / name).string(); }

}  // namespace plait::test
