// The rotary embedding's frequencies, shared by the CPU reference (rope.hpp) and the GPU kernel (rope.cuh): pair i of
// a head of head_dim turns by position x theta^(-2i / head_dim), and with LLaMA 3.1's scaling (rope_scaling of type
// llama3: factor, low- and high-frequency factors, the original context length L) the slow pairs turn `factor` times
// slower: a pair whose wavelength 2 pi / f exceeds L / low turns at f / factor, one under L / high keeps f, and those
// between blend the two by s = (L / wavelength - low) / (high - low): (1 - s) f / factor + s f.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PLAIT_ROPE_HOST_DEVICE __host__ __device__
#else
#define PLAIT_ROPE_HOST_DEVICE
#endif

namespace plait::kernels {

struct RopeFrequencies {
  double theta = 10000.0;
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  double original_positions = 0.0;  // L; 0: no scaling

  RopeFrequencies() = default;
  RopeFrequencies(double base) : theta(base) {}  // NOLINT: a base alone is the unscaled rotary embedding

  PLAIT_ROPE_HOST_DEVICE double inv_freq(std::int64_t i, std::int64_t head_dim) const {
    const double f = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    if (original_positions <= 0.0) return f;
    const double wavelength = 2.0 * 3.14159265358979323846 / f;
    if (wavelength > original_positions / low_freq_factor) return f / factor;
    if (wavelength < original_positions / high_freq_factor) return f;
    const double s = (original_positions / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor);
    return (1.0 - s) * f / factor + s * f;
  }
};

}  // namespace plait::kernels
