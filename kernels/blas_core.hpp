// Which of OpenBLAS's kernel sets runs GEMMs, and a wider one where OpenBLAS did not recognise the CPU.
// An OpenBLAS built for many CPUs (Debian's) picks its kernels by the CPU's model number when it loads. A model newer
// than the library gets its generic SSE3 kernels ("Prescott"): Debian 12's 0.3.21 does this on Sapphire and Emerald
// Rapids, where they run sgemm at 60 GFLOP/s on two cores against 280 for its AVX-512 ("SkylakeX") kernels, and
// plait-train's default run at a third of the speed. OPENBLAS_CORETYPE names the kernel set instead; the library reads
// it once, as it loads, so a program that wants the wider kernels sets it and starts again (restart_with_wider_blas).
#pragma once

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" char* openblas_get_corename(void);

namespace plait::kernels {

// The kernel set OpenBLAS runs, as it names it ("Prescott", "Haswell", "SkylakeX", "Zen", ...).
inline std::string blas_core() {
  const char* name = openblas_get_corename();
  return name ? name : "";
}

// Vector units, widest first: 3 AVX-512 (F, BW, VL and DQ, what OpenBLAS's SkylakeX kernels use), 2 AVX2 with FMA,
// 1 AVX, 0 neither.
inline int blas_core_width(std::string core) {
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (core == "skylakex" || core == "cooperlake" || core == "sapphirerapids") return 3;
  if (core == "haswell" || core == "zen" || core == "excavator") return 2;
  if (core == "sandybridge" || core == "bulldozer" || core == "piledriver" || core == "steamroller") return 1;
  return 0;
}

// The widest vector units this CPU has and its operating system enables (GCC's and Clang's checks include the OS's
// saved-state flags, so AVX-512 a hypervisor hides counts as absent).
inline int cpu_vector_width() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return 3;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
  if (__builtin_cpu_supports("avx")) return 1;
#endif
  return 0;
}

inline bool cpu_is_amd() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_is("amd");
#else
  return false;
#endif
}

// The OPENBLAS_CORETYPE of kernels as wide as a CPU of `cpu_width` (cpu_vector_width), where the kernel set `running`
// is narrower: SkylakeX for AVX-512, Haswell for AVX2 (Zen on AMD), Sandybridge for AVX. Empty where `running` is
// as wide already.
inline std::string wider_blas_core(const std::string& running, int cpu_width, bool amd) {
  if (blas_core_width(running) >= cpu_width) return "";
  switch (cpu_width) {
    case 3: return "SkylakeX";
    case 2: return amd ? "Zen" : "Haswell";
    case 1: return "Sandybridge";
    default: return "";
  }
}

// This process's rank as mpirun (Open MPI, PMIx or MPICH's PMI) tells it before MPI starts; 0 without a launcher.
inline int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return 0;
}

// Where OpenBLAS runs kernels narrower than the CPU's vector units and OPENBLAS_CORETYPE is unset (whoever set it
// chose), starts this program again in the same process, with the same arguments and OPENBLAS_CORETYPE naming the
// wider kernels, and says so on standard error if `announce`. Call it first thing in main, before MPI starts (each
// rank of an mpirun restarts alone; let one announce). Returns where nothing changes, or where the restart fails
// (then with the environment as it was, on the kernels OpenBLAS picked).
inline void restart_with_wider_blas(char** argv, const char* program, bool announce) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const std::string running = blas_core(), wider = wider_blas_core(running, cpu_vector_width(), cpu_is_amd());
  if (wider.empty()) return;
  // The executable's own path, not /proc/self/exe: the process keeps its name (ps, pkill, /proc/PID/comm).
  char path[4096];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0) return;
  path[length] = '\0';
  if (announce)
    std::fprintf(stderr,
                 "%s: OpenBLAS chose its %s kernels, narrower than this CPU's vector units; running with "
                 "OPENBLAS_CORETYPE=%s (set OPENBLAS_CORETYPE to choose)\n",
                 program, running.c_str(), wider.c_str());
  std::fflush(stderr);
  if (setenv("OPENBLAS_CORETYPE", wider.c_str(), 1) != 0) return;
  execv(path, argv);
  unsetenv("OPENBLAS_CORETYPE");
  if (announce) std::fprintf(stderr, "%s: could not start again; going on with the %s kernels\n", program, running.c_str());
}

// Says once per process, on standard error and from the launcher's rank 0, where OpenBLAS runs kernels narrower
// than the CPU's and nobody chose them (OPENBLAS_CORETYPE unset): which set to name, or to restart. The Host backend
// calls it at its first GEMM, for programs that did not restart (plait-train and the benchmarks do, before any GEMM).
inline void warn_once_if_narrow_blas() {
  static const bool said = [] {
    if (std::getenv("OPENBLAS_CORETYPE") != nullptr || launcher_rank() != 0) return false;
    const std::string running = blas_core(), wider = wider_blas_core(running, cpu_vector_width(), cpu_is_amd());
    if (wider.empty()) return false;
    std::fprintf(stderr,
                 "plait: OpenBLAS runs its %s kernels on a CPU that can run its %s ones, several times faster for "
                 "GEMMs: set OPENBLAS_CORETYPE=%s, or call plait::kernels::restart_with_wider_blas first thing in "
                 "main (docs/training.md, \"OpenBLAS's kernels\")\n",
                 running.c_str(), wider.c_str(), wider.c_str());
    return true;
  }();
  (void)said;
}

}  // namespace plait::kernels
