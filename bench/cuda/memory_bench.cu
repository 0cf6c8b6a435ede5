// The memory-bound kernels: RMSNorm forward/backward and fused softmax cross-entropy (kernels/rmsnorm.cuh,
// kernels/cross_entropy.cuh), bf16, in GB/s of the bytes each must move at least, next to the device-to-device copy
// bandwidth measured in the same run (the practical roofline: read + write of the same bytes).
//   RMSNorm forward:  read x, write y                 (rstd and weight are negligible)
//   RMSNorm backward: read x, dy, dx; write dx        (dx accumulates)
//   cross-entropy:    read logits twice, write once   (the fused kernel's traffic: max/sum pass, gradient pass)
#include "plait/kernels/cross_entropy.cuh"
#include "plait/kernels/rmsnorm.cuh"

#include <cstdio>
#include <random>
#include <vector>

#include "plait/backend/cuda.hpp"
#include "timing.cuh"

namespace {

using plait::DeviceBuffer;
using plait::MemoryKind;
namespace device = plait::kernels::device;
using bf16 = __nv_bfloat16;

using bench::milliseconds;

DeviceBuffer<bf16> random_buffer(std::size_t n, std::mt19937& rng, float mean = 0.0f) {
  std::normal_distribution<float> dist(mean, 1.0f);
  std::vector<bf16> host(n);
  for (auto& x : host) x = __float2bfloat16(dist(rng));
  DeviceBuffer<bf16> buffer(n, MemoryKind::workspace);
  plait::Cuda<float>::to_device(host.data(), buffer.data(), static_cast<std::int64_t>(n));
  return buffer;
}

void report(const char* what, double bytes, double ms, double copy_gbs) {
  const double gbs = bytes / ms * 1e-6;
  std::printf("%-34s %9.3f ms %8.0f GB/s %6.1f%% of copy\n", what, ms, gbs, 100.0 * gbs / copy_gbs);
}

}  // namespace

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  PLAIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const cudaStream_t stream = plait::Cuda<float>::stream();
  std::mt19937 rng(std::random_device{}());

  // Copy bandwidth: 1 GiB read + 1 GiB written.
  const std::size_t copy_bytes = std::size_t(1) << 30;
  DeviceBuffer<unsigned char> from(copy_bytes, MemoryKind::workspace), to(copy_bytes, MemoryKind::workspace);
  const double copy_ms = milliseconds(
      [&] { PLAIT_CUDA_CHECK(cudaMemcpyAsync(to.data(), from.data(), copy_bytes, cudaMemcpyDeviceToDevice, stream)); },
      stream);
  const double copy_gbs = 2.0 * copy_bytes / copy_ms * 1e-6;
  std::printf("device: %s; device-to-device copy %.0f GB/s (read + write), the roofline below\n", prop.name, copy_gbs);

  {
    const std::int64_t rows = 16384, dim = 4096;  // 16k tokens, hidden 4096
    const std::size_t n = rows * dim;
    auto x = random_buffer(n, rng), dy = random_buffer(n, rng), weight = random_buffer(dim, rng, 1.0f);
    DeviceBuffer<bf16> y(n, MemoryKind::activations), rstd(rows, MemoryKind::activations), dx(n, MemoryKind::gradients),
        dweight(dim, MemoryKind::gradients);
    DeviceBuffer<float> workspace(device::rmsnorm_backward_workspace_floats(rows, dim), MemoryKind::workspace);
    const double fwd_ms = milliseconds(
        [&] {
          PLAIT_CUDA_CHECK(device::rmsnorm_forward(x.data(), weight.data(), rows, dim, 1e-5, y.data(), rstd.data(),
                                                   stream));
        },
        stream);
    const double bwd_ms = milliseconds(
        [&] {
          PLAIT_CUDA_CHECK(device::rmsnorm_backward(x.data(), weight.data(), rstd.data(), dy.data(), rows, dim,
                                                    dx.data(), dweight.data(), workspace.data(), stream));
        },
        stream);
    report("RMSNorm forward (16384 x 4096)", 2.0 * n * sizeof(bf16), fwd_ms, copy_gbs);
    report("RMSNorm backward (16384 x 4096)", 4.0 * n * sizeof(bf16), bwd_ms, copy_gbs);
  }
  {
    const std::int64_t rows = 8192, vocab = 32000;
    const std::size_t n = rows * vocab;
    auto logits = random_buffer(n, rng);
    std::vector<std::int32_t> host_targets(rows);
    std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(vocab - 1));
    for (auto& t : host_targets) t = pick(rng);
    DeviceBuffer<std::int32_t> targets(rows, MemoryKind::workspace);
    plait::Cuda<float>::to_device(host_targets.data(), targets.data(), rows);
    DeviceBuffer<bf16> loss(rows, MemoryKind::activations);
    // Overwrites the logits with gradients each time: the timing is the same whatever the values.
    const double ms = milliseconds(
        [&] {
          PLAIT_CUDA_CHECK(device::cross_entropy_forward_backward(logits.data(), targets.data(), rows, vocab,
                                                                  1.0f / rows, loss.data(), stream));
        },
        stream);
    report("cross-entropy fwd+bwd (8192 x 32000)", 3.0 * n * sizeof(bf16), ms, copy_gbs);
  }
  return 0;
}
