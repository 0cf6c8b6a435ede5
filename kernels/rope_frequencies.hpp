// The rotary embedding's frequencies, shared by the CPU reference (rope.hpp) and the GPU kernel (rope.cuh): pair i of
// a head of head_dim turns by position x f_i, f_i = theta^(-2i / head_dim), unless a scaling (config.json's
// rope_scaling) stretches the context the model was trained for:
// - linear (factor F): every pair turns F times slower (positions divided by F);
// - dynamic (NTK-aware, factor F): the base grows only for sequences longer than the positions the model was made for
//   (max_position_embeddings), which plait does not train (plait-train refuses a longer --seq-len): within them the
//   frequencies are the unscaled ones;
// - llama3 (LLaMA 3.1's: factor F, low- and high-frequency factors, the original context length L): the slow pairs
//   turn F times slower: a pair whose wavelength 2 pi / f exceeds L / low turns at f / F, one under L / high keeps f,
//   and those between blend the two by s = (L / wavelength - low) / (high - low): (1 - s) f / F + s f.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PLAIT_ROPE_HOST_DEVICE __host__ __device__
#else
#define PLAIT_ROPE_HOST_DEVICE
#endif

namespace plait::kernels {

enum class RopeScalingKind : int { none = 0, linear = 1, llama3 = 2, dynamic = 3 };

// A scaling of the frequencies; the fields a kind does not use keep their defaults.
struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::none;
  double factor = 1.0;                                  // linear, dynamic and llama3
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  std::int64_t original_positions = 0;                  // llama3: L
};

struct RopeFrequencies {
  double theta = 10000.0;
  RopeScaling scaling;

  RopeFrequencies() = default;
  RopeFrequencies(double base) : theta(base) {}  // NOLINT: a base alone is the unscaled rotary embedding
  RopeFrequencies(double base, const RopeScaling& s) : theta(base), scaling(s) {}

  PLAIT_ROPE_HOST_DEVICE double inv_freq(std::int64_t i, std::int64_t head_dim) const {
    const double f = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    switch (scaling.kind) {
      case RopeScalingKind::none:
      case RopeScalingKind::dynamic: return f;
      case RopeScalingKind::linear: return f / scaling.factor;
      case RopeScalingKind::llama3: break;
    }
    const double original = static_cast<double>(scaling.original_positions);
    const double wavelength = 2.0 * 3.14159265358979323846 / f;
    if (wavelength > original / scaling.low_freq_factor) return f / scaling.factor;
    if (wavelength < original / scaling.high_freq_factor) return f;
    const double s = (original / wavelength - scaling.low_freq_factor) /
                     (scaling.high_freq_factor - scaling.low_freq_factor);
    return (1.0 - s) * f / scaling.factor + s * f;
  }
};

}  // namespace plait::kernels
