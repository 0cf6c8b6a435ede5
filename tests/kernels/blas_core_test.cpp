// Which OpenBLAS kernel set a CPU should run: the table from kernel-set names to vector widths, the choice of a
// wider set, and the CPU's width against what Linux says of it in /proc/cpuinfo (read apart from the compiler's
// check). plait-train's restart and the Host backend's one-time warning are tested end to end by
// tests/trainer_blas_test.sh.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "plait/kernels/blas_core.hpp"

using plait::kernels::blas_core_width;
using plait::kernels::wider_blas_core;

TEST_CASE("OpenBLAS kernel sets by the vector units they use", "[kernels][blas_core]") {
  CHECK(blas_core_width("SkylakeX") == 3);
  CHECK(blas_core_width("skylakex") == 3);
  CHECK(blas_core_width("Cooperlake") == 3);
  CHECK(blas_core_width("Haswell") == 2);
  CHECK(blas_core_width("Zen") == 2);
  CHECK(blas_core_width("Sandybridge") == 1);
  CHECK(blas_core_width("Prescott") == 0);
  CHECK(blas_core_width("Core2") == 0);
  CHECK(blas_core_width("") == 0);
}

TEST_CASE("A wider kernel set is named only where the CPU has wider vector units than the set in use",
          "[kernels][blas_core]") {
  // Debian 12's OpenBLAS on Sapphire or Emerald Rapids: its generic kernels on an AVX-512 CPU.
  CHECK(wider_blas_core("Prescott", 3, false) == "SkylakeX");
  CHECK(wider_blas_core("Haswell", 3, false) == "SkylakeX");
  CHECK(wider_blas_core("Zen", 3, true) == "SkylakeX");
  CHECK(wider_blas_core("Prescott", 2, false) == "Haswell");
  CHECK(wider_blas_core("Prescott", 2, true) == "Zen");
  CHECK(wider_blas_core("Nehalem", 1, false) == "Sandybridge");
  // As wide already, or wider than the CPU (a user's choice): nothing.
  CHECK(wider_blas_core("SkylakeX", 3, false).empty());
  CHECK(wider_blas_core("Cooperlake", 3, false).empty());
  CHECK(wider_blas_core("Haswell", 2, false).empty());
  CHECK(wider_blas_core("Zen", 2, true).empty());
  CHECK(wider_blas_core("SkylakeX", 2, false).empty());
  CHECK(wider_blas_core("Prescott", 0, false).empty());
}

TEST_CASE("The CPU's vector width is the one Linux reports", "[kernels][blas_core]") {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(cpuinfo, line))
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      for (std::string w; words >> w;) flags.insert(w);
      break;
    }
  if (flags.empty()) {
    WARN("no /proc/cpuinfo flags here: the CPU's width is not checked");
    return;
  }
  const auto has = [&](const char* f) { return flags.count(f) > 0; };
  const int expected = has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq") ? 3
                       : has("avx2") && has("fma")                                            ? 2
                       : has("avx")                                                           ? 1
                                                                                              : 0;
  CHECK(plait::kernels::cpu_vector_width() == expected);
  INFO("OpenBLAS runs its " << plait::kernels::blas_core() << " kernels");
  CHECK(!plait::kernels::blas_core().empty());
}
