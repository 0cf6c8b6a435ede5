// The GPU half of plait-bench-calibrate: see calibrate_gpu.hpp.
#include "calibrate_gpu.hpp"

#include <cmath>
#include <memory>
#include <vector>

#include "plait/backend/cuda.hpp"

namespace plait::bench_gpu {

namespace {

using Backend = Cuda<bf16>;
template <class U>
using Buffer = DeviceBuffer<U>;
using core::MemoryKind;

// Values in [-1, 1) from the element's index and a salt, never all zeros: tensor cores draw less power (and clock
// higher) on zeros, so a GEMM on zeros would measure faster than training runs.
template <class U>
__global__ void fill_kernel(U* x, std::int64_t n, std::uint32_t salt) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ salt;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    const float v = static_cast<float>(h & 0xffffu) / 32768.0f - 1.0f;
    if constexpr (std::is_same_v<U, float>) x[i] = v;
    else x[i] = __float2bfloat16(v);
  }
}
template <class U>
Buffer<U> filled(std::int64_t n, std::uint32_t salt, MemoryKind kind = MemoryKind::workspace) {
  Buffer<U> b(static_cast<std::size_t>(n), kind);
  using D = std::conditional_t<std::is_same_v<U, float>, float, __nv_bfloat16>;
  fill_kernel<<<1024, 256, 0, Backend::stream()>>>(reinterpret_cast<D*>(b.data()), n, salt);
  PLAIT_CUDA_CHECK(cudaGetLastError());
  return b;
}

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

Device select_device(int index) {
  PLAIT_CUDA_CHECK(cudaSetDevice(index));
  cudaDeviceProp prop{};
  PLAIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return {prop.name, prop.major, prop.minor, static_cast<double>(prop.totalGlobalMem)};
}

void* backend_stream() { return Backend::stream(); }
void synchronize() { Backend::synchronize(); }

Work gemm(std::int64_t m, std::int64_t n, std::int64_t k) {
  struct Buffers {
    Buffer<bf16> a, b, c;
  };
  auto s = std::make_shared<Buffers>(Buffers{filled<bf16>(m * k, 1), filled<bf16>(k * n, 2), filled<bf16>(m * n, 3)});
  return [s, m, n, k] {
    Backend::gemm(kernels::Trans::no, kernels::Trans::no, m, n, k, bf16(1.0f), s->a.data(), k, s->b.data(), n,
                  bf16(0.0f), s->c.data(), n);
  };
}

Work attention(std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim) {
  const kernels::AttentionShape shape{batch, seq, heads, heads, head_dim, 1.0 / std::sqrt(static_cast<double>(head_dim))};
  const std::int64_t n = batch * seq * heads * head_dim;
  struct Buffers {
    Buffer<bf16> q, k, v, out, dout, dq, dk, dv;
    Buffer<float> lse;
  };
  auto s = std::make_shared<Buffers>(Buffers{filled<bf16>(n, 4), filled<bf16>(n, 5), filled<bf16>(n, 6),
                                             filled<bf16>(n, 7), filled<bf16>(n, 8), filled<bf16>(n, 9),
                                             filled<bf16>(n, 10), filled<bf16>(n, 11),
                                             filled<float>(batch * heads * seq, 12)});
  return [s, shape] {
    Backend::attention_forward(shape, s->q.data(), s->k.data(), s->v.data(), s->out.data(), s->lse.data());
    Backend::attention_backward(shape, s->q.data(), s->k.data(), s->v.data(), s->out.data(), s->lse.data(),
                                s->dout.data(), s->dq.data(), s->dk.data(), s->dv.data());
  };
}

Work layer_kernels(std::int64_t hidden, std::int64_t heads, std::int64_t kv_heads, std::int64_t ffn,
                   std::int64_t tokens, double rope_theta) {
  const std::int64_t head_dim = hidden / heads;
  struct Buffers {
    Buffer<bf16> x, weight, y;
    Buffer<float> rstd;  // row statistics are fp32
    Buffer<bf16> dy, dx;
    Buffer<float> dweight;  // gradients are fp32
    Buffer<bf16> q, k, gate, up, act, dact, dgate, dup;
  };
  auto s = std::make_shared<Buffers>(Buffers{
      filled<bf16>(tokens * hidden, 13), filled<bf16>(hidden, 14), filled<bf16>(tokens * hidden, 15),
      filled<float>(tokens, 16), filled<bf16>(tokens * hidden, 17), filled<bf16>(tokens * hidden, 18),
      filled<float>(hidden, 19), filled<bf16>(tokens * hidden, 20), filled<bf16>(tokens * kv_heads * head_dim, 21),
      filled<bf16>(tokens * ffn, 22), filled<bf16>(tokens * ffn, 23), filled<bf16>(tokens * ffn, 24),
      filled<bf16>(tokens * ffn, 25), filled<bf16>(tokens * ffn, 26), filled<bf16>(tokens * ffn, 27)});
  return [s, hidden, heads, kv_heads, ffn, tokens, head_dim, rope_theta] {
    for (int norm = 0; norm < 2; ++norm) {
      Backend::rmsnorm_forward(s->x.data(), s->weight.data(), tokens, hidden, 1e-5, s->y.data(), s->rstd.data());
      Backend::rmsnorm_backward(s->x.data(), s->weight.data(), s->rstd.data(), s->dy.data(), tokens, hidden,
                                s->dx.data(), s->dweight.data());
      Backend::add(s->y.data(), s->x.data(), tokens * hidden);    // the residual, forward
      Backend::add(s->dy.data(), s->dx.data(), tokens * hidden);  // and backward
    }
    Backend::rope_forward(s->q.data(), 1, tokens, heads, head_dim, 0, rope_theta);
    Backend::rope_forward(s->k.data(), 1, tokens, kv_heads, head_dim, 0, rope_theta);
    Backend::rope_backward(s->q.data(), 1, tokens, heads, head_dim, 0, rope_theta);
    Backend::rope_backward(s->k.data(), 1, tokens, kv_heads, head_dim, 0, rope_theta);
    Backend::swiglu_forward(s->gate.data(), s->up.data(), tokens * ffn, s->act.data());
    Backend::swiglu_backward(s->gate.data(), s->up.data(), s->dact.data(), tokens * ffn, s->dgate.data(),
                             s->dup.data());
  };
}

Work adamw(std::int64_t params) {
  struct Buffers {
    Buffer<float> master, m, v;
    Buffer<bf16> grad, weight;
  };
  auto s = std::make_shared<Buffers>(Buffers{filled<float>(params, 28), Buffer<float>(params, MemoryKind::optimizer),
                                             Buffer<float>(params, MemoryKind::optimizer), filled<bf16>(params, 29),
                                             Buffer<bf16>(params, MemoryKind::parameters)});
  return [s, params] {
    Backend::adamw_update(s->master.data(), s->grad.data(), s->m.data(), s->v.data(), params,
                          kernels::AdamWStep{1e-4}, s->weight.data());
  };
}

std::shared_ptr<float> device_floats(std::int64_t count) {
  auto buffer = std::make_shared<Buffer<float>>(filled<float>(count, 30));
  synchronize();
  return std::shared_ptr<float>(buffer, buffer->data());
}

}  // namespace plait::bench_gpu
