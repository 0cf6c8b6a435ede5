// Measures a backend's dense GEMM rate (FLOP/s) on square matrices: the yardstick that CPU benchmarks and the
// trainer's MFU on a CPU are reported against ("what BLAS reaches on these cores, in this run").
#pragma once

#include <chrono>
#include <cstdint>

#include "plait/backend/concepts.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/blas.hpp"

namespace plait::backend {

template <concepts::Backend B>
double measure_gemm_flops(std::int64_t n = 1024, double min_seconds = 0.3) {
  using T = typename B::value_type;
  typename B::template Buffer<T> a(static_cast<std::size_t>(n * n), core::MemoryKind::workspace),
      b(static_cast<std::size_t>(n * n), core::MemoryKind::workspace),
      c(static_cast<std::size_t>(n * n), core::MemoryKind::workspace);
  B::fill(a.data(), n * n, 0.5);
  B::fill(b.data(), n * n, 0.25);
  auto once = [&] {
    B::gemm(kernels::Trans::no, kernels::Trans::yes, n, n, n, T(1), a.data(), n, b.data(), n, T(0), c.data(), n);
  };
  once();  // warm-up: thread pool start, page faults
  B::synchronize();
  std::int64_t runs = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0.0;
  while (elapsed < min_seconds) {
    once();
    B::synchronize();
    ++runs;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return 2.0 * static_cast<double>(n * n * n) * static_cast<double>(runs) / elapsed;
}

}  // namespace plait::backend
