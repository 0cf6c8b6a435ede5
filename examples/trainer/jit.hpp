// Layouts that plait-train does not have compiled in are built on first use: the flags name a Layout type, a
// translation unit instantiating it is compiled into a shared library with the compiler and flags plait-train was
// built with, kept in a cache, and loaded. One rank per node builds; the others wait. Layouts are types, flags are
// runtime, and every valid combination works without editing CMake.
#pragma once

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "jit_config.hpp"
#include "options.hpp"
#include "plait/comm/mpi.hpp"

namespace trainer {

inline std::string jit_cache_dir(const Options& o) {
  if (!o.jit_cache.empty()) return o.jit_cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME")) return std::string(xdg) + "/plait";
  if (const char* home = std::getenv("HOME")) return std::string(home) + "/.cache/plait";
  return "/tmp/plait-cache";
}

inline int run_built_on_first_use(const Options& o) {
  plait::comm::Mpi world;
  const std::string type = layout_type(o);
  const bool cuda = o.device == "cuda";  // built by nvcc with run_cuda.hpp, else by the C++ compiler
  const std::string compile = cuda ? jit_cuda_compile_command : jit_compile_command;
  const std::string link = cuda ? jit_cuda_link_flags : jit_link_flags;
  PLAIT_CHECK(!compile.empty(), "--device cuda: this plait-train was built without CUDA; build it where the CUDA "
              "toolkit is, or use --device host");
  // The key changes with the layout, the compile command and the plait-train binary (a rebuild invalidates it).
  struct stat self {};
  stat("/proc/self/exe", &self);
  const std::size_t key =
      std::hash<std::string>{}(type + "|" + compile + "|" + std::to_string(self.st_mtime) + "|" + std::to_string(self.st_size));
  const std::filesystem::path dir = jit_cache_dir(o);
  char name[32];
  std::snprintf(name, sizeof name, "layout-%016zx", key);
  const std::filesystem::path source = dir / (std::string(name) + (cuda ? ".cu" : ".cpp")), library = dir / (std::string(name) + ".so"),
                              log = dir / (std::string(name) + ".log");

  plait::comm::Mpi node = world.node();
  int failed = 0;
  const bool builds = node.rank() == 0 && !std::filesystem::exists(library);  // one rank per node builds
  std::string unusable_cache;  // why the cache directory cannot hold the build, on the ranks that tried
  if (builds) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::ofstream code;
    if (std::filesystem::is_directory(dir)) code.open(source);
    code << "// Built by plait-train on first use of this layout.\n#include \"" << (cuda ? "run_cuda.hpp" : "run_host.hpp")
         << "\"\nextern \"C\" int plait_train_layout(const trainer::Options& o) {\n  using L = " << type
         << ";\n  return trainer::" << (cuda ? "run_on_cuda" : "run_in_dtype") << "<L>(o);\n}\n";
    code.close();  // sets failbit if the file was not open or did not flush
    if (!code.good()) {
      unusable_cache = "cannot write in the layout cache directory '" + dir.string() + "'" +
                       (ec ? " (" + ec.message() + ")" : "") + ": give a writable directory with --jit-cache";
      failed = 1;
    }
  }
  world.all_reduce(&failed, 1, plait::comm::ReduceOp::max);
  if (failed)
    plait::core::fail(unusable_cache.empty() ? "another node cannot write in its layout cache directory: give a "
                                               "directory every node can write with --jit-cache"
                                             : unusable_cache);
  if (builds) {
    if (world.rank() == 0)
      std::printf("plait-train: building the layout %s%s on first use (%s; kept in %s)\n", type.c_str(),
                  cuda ? " for CUDA" : "", cuda ? "a few minutes with nvcc" : "about half a minute", dir.c_str());
    std::fflush(stdout);
    std::error_code ec;
    const std::string temporary = library.string() + ".tmp" + std::to_string(world.rank());
    const std::string command = compile + " -o '" + temporary + "' '" + source.string() + "' " + link + " > '" +
                                log.string() + "' 2>&1";
    failed = std::system(command.c_str()) != 0 || !std::filesystem::exists(temporary);
    if (!failed) std::filesystem::rename(temporary, library, ec);
    failed = failed || ec;
  }
  world.all_reduce(&failed, 1, plait::comm::ReduceOp::max);
  if (failed) {
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    std::string tail = text.str();
    if (tail.size() > 2000) tail = "..." + tail.substr(tail.size() - 2000);
    plait::core::fail("building the layout ", type, " failed (compiler output in ", log.string(), "):\n", tail);
  }
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  PLAIT_CHECK(handle != nullptr, "cannot load the layout built in ", library.string(), ": ", dlerror(),
              " (delete it to rebuild)");
  using Entry = int (*)(const Options&);
  auto entry = reinterpret_cast<Entry>(dlsym(handle, "plait_train_layout"));
  PLAIT_CHECK(entry != nullptr, "the layout library ", library.string(), " has no entry point (delete it to rebuild)");
  return entry(o);
}

}  // namespace trainer
