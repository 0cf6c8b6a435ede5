// Attention forward + backward on the GPU (kernels/attention.cuh), causal, bf16, at sequence 2048 and 8192, hidden
// 2048 (16 heads of 128 by default; --head-dim=32 or 64 gives 64 or 32 heads): TFLOP/s next to the H100 SXM roofline
// (989 TFLOP/s dense bf16), and the ratio against PyTorch's scaled_dot_product_attention (flash backend) when its
// figures are given, measured in the same run (its script times head dim 128 only):
//   python3 bench/cuda/sdpa_baseline.py > sdpa.txt && plait-bench-cuda-attention sdpa.txt [--head-dim=128]
// FLOPs as FlashAttention-2 counts them: forward 4 B H T^2 hd / 2 (causal), backward 2.5x forward.
#include "plait/kernels/attention.cuh"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "plait/backend/cuda.hpp"
#include "timing.cuh"

namespace {

using plait::DeviceBuffer;
using plait::MemoryKind;
using plait::kernels::AttentionShape;
namespace device = plait::kernels::device;
using bf16 = __nv_bfloat16;

constexpr double roofline_tflops = 989.0;  // H100 SXM, dense bf16

using bench::milliseconds;

DeviceBuffer<bf16> random_buffer(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<bf16> host(n);
  for (auto& x : host) x = __float2bfloat16(dist(rng));
  DeviceBuffer<bf16> buffer(n, MemoryKind::workspace);
  plait::Cuda<float>::to_device(host.data(), buffer.data(), static_cast<std::int64_t>(n));
  return buffer;
}

// Lines "sdpa seq=2048 fwd_ms=... bwd_ms=..." from sdpa_baseline.py.
std::map<std::int64_t, std::pair<double, double>> read_baseline(const char* path) {
  std::map<std::int64_t, std::pair<double, double>> baseline;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::int64_t seq = 0;
    double fwd = 0.0, bwd = 0.0;
    if (std::sscanf(line.c_str(), "sdpa seq=%ld fwd_ms=%lf bwd_ms=%lf", &seq, &fwd, &bwd) == 3)
      baseline[seq] = {fwd, bwd};
  }
  return baseline;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  std::int64_t head_dim = 128;
  std::map<std::int64_t, std::pair<double, double>> baseline;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--head-dim=", 11) == 0) {
      head_dim = std::atol(argv[i] + 11);
    } else {
      baseline = read_baseline(argv[i]);
    }
  }
  if (head_dim != 32 && head_dim != 64 && head_dim != 128) {
    std::printf("--head-dim must be 32, 64 or 128 (the instantiated kernels), not %ld\n", static_cast<long>(head_dim));
    return 1;
  }
  if (head_dim != 128) baseline.clear();  // sdpa_baseline.py measures 16 heads of 128
  cudaDeviceProp prop{};
  PLAIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s; roofline %.0f TFLOP/s (H100 SXM dense bf16)\n", prop.name, roofline_tflops);
  std::printf("%-6s %-5s %-4s %-4s %9s %9s %9s %9s %9s %8s %10s\n", "seq", "batch", "H", "hd", "fwd ms", "bwd ms",
              "fwd TF/s", "bwd TF/s", "f+b TF/s", "roofline", "vs SDPA");
  const cudaStream_t stream = plait::Cuda<float>::stream();
  std::mt19937 rng(std::random_device{}());
  for (const std::int64_t seq : {std::int64_t{2048}, std::int64_t{8192}}) {
    const std::int64_t batch = 16384 / seq, heads = 2048 / head_dim;  // 16k tokens per step, hidden 2048
    const AttentionShape s{batch, seq, heads, heads, head_dim, 1.0 / std::sqrt(double(head_dim))};
    const std::size_t q_size = batch * seq * heads * head_dim;
    auto q = random_buffer(q_size, rng), k = random_buffer(q_size, rng), v = random_buffer(q_size, rng);
    auto dout = random_buffer(q_size, rng);
    DeviceBuffer<bf16> out(q_size, MemoryKind::activations), dq(q_size, MemoryKind::gradients),
        dk(q_size, MemoryKind::gradients), dv(q_size, MemoryKind::gradients);
    DeviceBuffer<float> lse(batch * heads * seq, MemoryKind::activations);
    DeviceBuffer<float> workspace(device::attention_backward_workspace_floats(s), MemoryKind::workspace);

    const double fwd_ms = milliseconds(
        [&] { PLAIT_CUDA_CHECK(device::attention_forward(s, q.data(), k.data(), v.data(), out.data(), lse.data(), stream)); },
        stream, 10);
    const double bwd_ms = milliseconds(
        [&] {
          PLAIT_CUDA_CHECK(device::attention_backward(s, q.data(), k.data(), v.data(), out.data(), lse.data(),
                                                      dout.data(), dq.data(), dk.data(), dv.data(), workspace.data(),
                                                      stream));
        },
        stream, 10);
    const double fwd_flops = 4.0 * batch * heads * double(seq) * seq * head_dim / 2.0, bwd_flops = 2.5 * fwd_flops;
    const double fwd_tf = fwd_flops / fwd_ms * 1e-9, bwd_tf = bwd_flops / bwd_ms * 1e-9;
    const double total_tf = (fwd_flops + bwd_flops) / (fwd_ms + bwd_ms) * 1e-9;
    std::string versus = "(no baseline)";
    if (const auto it = baseline.find(seq); it != baseline.end()) {
      std::ostringstream ratio;
      ratio.precision(2);
      ratio << std::fixed << (it->second.first + it->second.second) / (fwd_ms + bwd_ms) << "x";
      versus = ratio.str();
    }
    std::printf("%-6ld %-5ld %-4ld %-4ld %9.3f %9.3f %9.1f %9.1f %9.1f %7.1f%% %10s\n", seq, batch, heads, head_dim,
                fwd_ms, bwd_ms, fwd_tf, bwd_tf, total_tf, 100.0 * total_tf / roofline_tflops, versus.c_str());
  }
  std::printf("vs SDPA: PyTorch's fwd+bwd time over ours (above 1 is faster than SDPA)\n");
  return 0;
}
