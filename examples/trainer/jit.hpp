// Layouts that plait-train does not have compiled in are built on first use: the flags name a Layout type, a
// translation unit instantiating it is compiled into a shared library with the compiler and flags plait-train was
// built with, kept in a cache, and loaded. One rank per node builds; the others wait. Layouts are types, flags are
// runtime, and every valid combination works without editing CMake.
// The cache holds code plait-train runs, so it lets no one else in: never a shared directory, a directory and
// libraries owned by the user and writable by no one else, the compiler run without a shell (paths are arguments,
// never parsed), and each library's content hash recorded when it is built and checked before it is loaded.
// Pitfall: a check and the load that follows are two moments; the ownership checks are what keep others out, the
// hash catches a library changed or cut short since its build (a full disk, a copy, an edit).
#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "jit_config.hpp"
#include "options.hpp"
#include "plait/comm/communicator.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/train/checkpoint.hpp"

extern char** environ;

namespace trainer {

// The cache directory: --jit-cache, else $XDG_CACHE_HOME/plait, else $HOME/.cache/plait. Never a directory shared
// with other users (such as /tmp): with neither HOME nor --jit-cache, says what to give.
inline std::string jit_cache_dir(const Options& o) {
  if (!o.jit_cache.empty()) return o.jit_cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != 0) return std::string(xdg) + "/plait";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != 0) return std::string(home) + "/.cache/plait";
  plait::core::fail("the layout ", layout_type(o), " is built on first use and kept in a cache of your own, and "
                    "neither HOME nor --jit-cache says where: set HOME, or give --jit-cache DIR (a directory only you "
                    "can write)");
}

// Why `path` may not hold code plait-train loads (empty: it may): it must be owned by this user and writable by no
// one else. `what` names it in the message.
inline std::string not_private(const std::filesystem::path& path, const std::string& what) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "cannot inspect the " + what + " '" + path.string() + "'";
  const bool directory = S_ISDIR(st.st_mode);
  if (st.st_uid != geteuid())
    return "the " + what + " '" + path.string() + "' belongs to user id " + std::to_string(st.st_uid) + ", not to you (" +
           std::to_string(geteuid()) + "), and plait-train would run code from it: give a " +
           (directory ? "directory of your own with --jit-cache" : "cache of your own with --jit-cache, or delete it");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return "the " + what + " '" + path.string() + "' can be written by others (mode " + mode +
           "), and plait-train would run code from it: chmod " + (directory ? "700" : "600") + " '" + path.string() + "'" +
           (directory ? "" : " (or delete it to rebuild)");
  }
  return "";
}

// The content hash recorded beside a library (FNV-1a 64 of its bytes, as checkpoints use: the ownership checks keep
// others out, so the hash guards against change and truncation, not against an adversary who could rewrite both).
inline std::string library_hash(const std::filesystem::path& library) {
  std::ifstream in(library, std::ios::binary);
  if (!in.good()) return "";
  std::uint64_t hash = 14695981039346656037ull;
  std::vector<char> chunk(1 << 20);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    hash = plait::train::fnv1a(chunk.data(), static_cast<std::size_t>(in.gcount()), hash);
  }
  char text[32];
  std::snprintf(text, sizeof text, "fnv1a64:%016llx", static_cast<unsigned long long>(hash));
  return text;
}

// Runs `arguments` (the program first, by path) with its output and errors into `log`, without a shell; returns
// whether it exited 0.
inline bool run_compiler(const std::vector<std::string>& arguments, const std::filesystem::path& log) {
  std::vector<char*> argv;
  for (const std::string& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  pid_t pid = 0;
  const int started = posix_spawn(&pid, argv[0], &files, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  if (started != 0) {
    std::ofstream(log) << "cannot run the compiler " << arguments[0] << ": " << std::strerror(started) << '\n';
    return false;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

inline int run_built_on_first_use(const Options& o) {
  plait::comm::Mpi world;
  const std::string type = layout_type(o);
  const bool cuda = o.device == "cuda";  // built by nvcc with run_cuda.hpp, else by the C++ compiler
  const std::string compile = cuda ? jit_cuda_compile_command : jit_compile_command;
  const std::vector<std::string>& compile_arguments = cuda ? jit_cuda_compile_arguments : jit_compile_arguments;
  const std::vector<std::string>& link_arguments = cuda ? jit_cuda_link_arguments : jit_link_arguments;
  PLAIT_CHECK(!compile.empty(), "--device cuda: this plait-train was built without CUDA; build it where the CUDA "
              "toolkit is, or use --device host");
  // On the host a library holds one precision: the element type Host<T> takes.
  const std::string element = o.dtype == "bf16" ? "plait::bf16" : o.dtype;
  // The key changes with the layout, the precision, the compile command and the plait-train binary (a rebuild
  // invalidates it).
  struct stat self {};
  stat("/proc/self/exe", &self);
  const std::size_t key = std::hash<std::string>{}(type + "|" + (cuda ? "" : element) + "|" + compile + "|" +
                                                   std::to_string(self.st_mtime) + "|" + std::to_string(self.st_size));
  const std::filesystem::path dir = jit_cache_dir(o);
  char name[32];
  std::snprintf(name, sizeof name, "layout-%016zx", key);
  const std::filesystem::path source = dir / (std::string(name) + (cuda ? ".cu" : ".cpp")), library = dir / (std::string(name) + ".so"),
                              log = dir / (std::string(name) + ".log"), hash_file = dir / (std::string(name) + ".hash");

  plait::comm::Mpi node = world.node();
  // One rank per node builds, when the library or its recorded hash is missing (a cache from before hashes were
  // recorded is rebuilt).
  const bool builds = node.rank() == 0 && !(std::filesystem::exists(library) && std::filesystem::exists(hash_file));
  std::string error;  // why the cache cannot be used, on the ranks that found out
  if (node.rank() == 0) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec) && std::filesystem::create_directories(dir, ec))
      std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);  // 0700: the cache is private
    if (!std::filesystem::is_directory(dir))
      error = "cannot write in the layout cache directory '" + dir.string() + "'" + (ec ? " (" + ec.message() + ")" : "") +
              ": give a writable directory with --jit-cache";
    else
      error = not_private(dir, "layout cache directory");
  }
  if (builds && error.empty()) {
    std::ofstream code(source, std::ios::trunc);
    code << "// Built by plait-train on first use of this layout.\n#include \"" << (cuda ? "run_cuda.hpp" : "run_host.hpp")
         << "\"\nextern \"C\" int plait_train_layout(const trainer::Options& o) {\n  using L = " << type
         << ";\n  return trainer::" << (cuda ? "run_on_cuda<L>" : "run<L, " + element + ">") << "(o);\n}\n";
    code.close();  // sets failbit if the file was not open or did not flush
    if (!code.good())
      error = "cannot write in the layout cache directory '" + dir.string() + "': give a writable directory with --jit-cache";
  }
  plait::comm::agree_or_throw(world, error);
  int failed = 0;
  if (builds) {
    if (world.rank() == 0)
      std::printf("plait-train: building the layout %s %s on first use (%s; kept in %s)\n", type.c_str(),
                  cuda ? "for CUDA" : ("in " + o.dtype).c_str(), cuda ? "a few minutes with nvcc" : "about half a minute",
                  dir.c_str());
    std::fflush(stdout);
    std::error_code ec;
    const std::string temporary = library.string() + ".tmp" + std::to_string(world.rank());
    std::vector<std::string> arguments = compile_arguments;
    arguments.insert(arguments.end(), {"-o", temporary, source.string()});
    arguments.insert(arguments.end(), link_arguments.begin(), link_arguments.end());
    failed = !run_compiler(arguments, log) || !std::filesystem::exists(temporary);
    if (!failed) {  // the hash first, then the library under its name: a library is never there without its hash
      std::ofstream(hash_file, std::ios::trunc) << library_hash(temporary) << '\n';
      std::filesystem::rename(temporary, library, ec);
    }
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
  // Every rank checks what it is about to load: the library and its hash are its user's alone, and they agree.
  error = not_private(library, "layout library");
  if (error.empty()) error = not_private(hash_file, "layout library's hash file");
  if (error.empty()) {
    std::string recorded;
    std::ifstream(hash_file) >> recorded;
    const std::string actual = library_hash(library);
    if (recorded != actual)
      error = "the layout library '" + library.string() + "' is not the one built there (its content hash is " + actual +
              ", " + hash_file.string() + " records " + (recorded.empty() ? "nothing" : recorded) +
              "): changed or cut short since; delete it to rebuild";
  }
  plait::comm::agree_or_throw(world, error);
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  PLAIT_CHECK(handle != nullptr, "cannot load the layout built in ", library.string(), ": ", dlerror(),
              " (delete it to rebuild)");
  using Entry = int (*)(const Options&);
  auto entry = reinterpret_cast<Entry>(dlsym(handle, "plait_train_layout"));
  PLAIT_CHECK(entry != nullptr, "the layout library ", library.string(), " has no entry point (delete it to rebuild)");
  return entry(o);
}

}  // namespace trainer
