// Shared by the kernel tests: seeded random inputs, relative errors, and central finite differences in fp64.
#pragma once

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace plait::test {

// Uniform in [lo, hi), from a fixed-seed generator so that failures reproduce.
inline std::vector<double> random_vector(std::int64_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> x(static_cast<std::size_t>(n));
  for (double& e : x) e = dist(gen);
  return x;
}

template <class To, class From>
std::vector<To> cast(const std::vector<From>& x) {
  return std::vector<To>(x.begin(), x.end());
}

template <class A, class B>
double dot(const std::vector<A>& a, const std::vector<B>& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return sum;
}

// ||a - b|| / ||b||, b the reference.
template <class A, class B>
double relative_error(const std::vector<A>& a, const std::vector<B>& b) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    diff += d * d;
    norm += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return std::sqrt(diff / norm);
}

// d loss / d x by central differences, one element at a time; x is perturbed in place and restored exactly.
// h = 1e-5 on O(1) inputs: truncation ~h^2 and rounding ~1e-16 / h both stay far below the 1e-6 the tests ask.
// The loss runs on one thread: thousands of tiny parallel regions spin-wait for seconds on a loaded machine, and
// the forward kernels give the same bits on any thread count (each output has one owner).
inline std::vector<double> numeric_gradient(std::vector<double>& x, const std::function<double()>& loss,
                                            double h = 1e-5) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<double> grad(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    grad[i] = (up - down) / (2.0 * h);
  }
  omp_set_num_threads(threads);
  return grad;
}

}  // namespace plait::test
