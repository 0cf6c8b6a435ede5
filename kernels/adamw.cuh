// AdamW on the GPU (reference: adamw.hpp), multi-tensor: one launch updates many parameter tensors, each block taking
// one chunk of one tensor, so that a model's hundreds of small tensors (norm weights, biases) cost a few launches, not
// hundreds. Moments are fp32; the parameter is P (fp32 master weights, or T in place), and when a bf16 weight copy is
// given, the updated master is also written there (what the next forward reads).
//
//   g = grad * grad_scale;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= lr * (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + weight_decay * param)
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "plait/kernels/adamw.hpp"  // AdamWStep
#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

// One tensor of a multi-tensor update. weight may be null (no bf16 copy wanted).
template <class P, class G>
struct AdamWTensor {
  P* param;       // (n): fp32 master weights, or the weights themselves
  const G* grad;  // (n)
  float* m;       // (n)
  float* v;       // (n)
  bf16* weight;   // (n) or null: written with the updated param rounded to bf16
  std::int64_t n;
  float weight_decay;
};

struct AdamWConfig {
  static constexpr int threads = 512;
  static constexpr std::int64_t chunk = 65536;  // elements per block: as Apex's multi_tensor_apply
  // Per launch, passed by value as the kernel's argument (under the classic 4 KiB limit of kernel parameters).
  static constexpr int max_tensors = 24;
  static constexpr int max_blocks = 320;
};

namespace detail {

struct AdamWScalars {
  float lr, beta1, beta2, eps, grad_scale, inv_bias1, inv_bias2;
};

template <class P, class G>
struct AdamWBatch {
  AdamWTensor<P, G> tensors[AdamWConfig::max_tensors];
  std::uint8_t block_tensor[AdamWConfig::max_blocks];
  std::int32_t block_chunk[AdamWConfig::max_blocks];
};

template <class P, class G>
__global__ void __launch_bounds__(AdamWConfig::threads)
    adamw_kernel(const __grid_constant__ AdamWBatch<P, G> batch, AdamWScalars s) {
  const AdamWTensor<P, G>& t = batch.tensors[batch.block_tensor[blockIdx.x]];
  const std::int64_t begin = static_cast<std::int64_t>(batch.block_chunk[blockIdx.x]) * AdamWConfig::chunk;
  const std::int64_t end = begin + AdamWConfig::chunk < t.n ? begin + AdamWConfig::chunk : t.n;
  for (std::int64_t i = begin + threadIdx.x; i < end; i += AdamWConfig::threads) {
    const float g = to_float(t.grad[i]) * s.grad_scale;
    const float m = s.beta1 * t.m[i] + (1.0f - s.beta1) * g;
    const float v = s.beta2 * t.v[i] + (1.0f - s.beta2) * g * g;
    t.m[i] = m;
    t.v[i] = v;
    const float p = to_float(t.param[i]);
    const float updated = p - s.lr * ((m * s.inv_bias1) / (sqrtf(v * s.inv_bias2) + s.eps) + t.weight_decay * p);
    t.param[i] = from_float<P>(updated);
    if (t.weight != nullptr) t.weight[i] = __float2bfloat16_rn(updated);
  }
}

}  // namespace detail

// Updates every tensor of tensors[0, count) with the step's hyperparameters; each tensor's own weight_decay applies
// (AdamWStep::weight_decay is not read here).
template <Storage P, Storage G>
cudaError_t adamw_update(const AdamWTensor<P, G>* tensors, int count, const AdamWStep& step, cudaStream_t stream) {
  const detail::AdamWScalars s{static_cast<float>(step.lr),
                               static_cast<float>(step.beta1),
                               static_cast<float>(step.beta2),
                               static_cast<float>(step.eps),
                               static_cast<float>(step.grad_scale),
                               static_cast<float>(1.0 / (1.0 - std::pow(step.beta1, static_cast<double>(step.step)))),
                               static_cast<float>(1.0 / (1.0 - std::pow(step.beta2, static_cast<double>(step.step))))};
  detail::AdamWBatch<P, G> batch{};
  int tensors_in_batch = 0, blocks = 0;
  auto launch = [&]() -> cudaError_t {
    if (blocks > 0) detail::adamw_kernel<P, G><<<blocks, AdamWConfig::threads, 0, stream>>>(batch, s);
    tensors_in_batch = 0;
    blocks = 0;
    return cudaGetLastError();
  };
  for (int i = 0; i < count; ++i) {
    const std::int64_t chunks = ceil_div(tensors[i].n, AdamWConfig::chunk);
    for (std::int64_t c = 0; c < chunks; ++c) {
      if (c == 0 || tensors_in_batch == 0) {  // the tensor takes a slot in this batch
        if (tensors_in_batch == AdamWConfig::max_tensors)
          if (const cudaError_t e = launch(); e != cudaSuccess) return e;
        batch.tensors[tensors_in_batch++] = tensors[i];
      }
      batch.block_tensor[blocks] = static_cast<std::uint8_t>(tensors_in_batch - 1);
      batch.block_chunk[blocks] = static_cast<std::int32_t>(c);
      if (++blocks == AdamWConfig::max_blocks)
        if (const cudaError_t e = launch(); e != cudaSuccess) return e;
    }
  }
  return launch();
}

// The single-tensor form of Host<T>::adamw_update: param in place (P = T), moments fp32.
template <Storage P, Storage G>
cudaError_t adamw_update(P* param, const G* grad, float* m, float* v, std::int64_t n, const AdamWStep& step,
                         cudaStream_t stream, bf16* weight = nullptr) {
  const AdamWTensor<P, G> tensor{param, grad, m, v, weight, n, static_cast<float>(step.weight_decay)};
  return adamw_update(&tensor, 1, step, stream);
}

}  // namespace plait::kernels::device
