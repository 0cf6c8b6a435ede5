// The GPU half of plait-bench-calibrate (bench/calibrate.cpp, g++): work the calibrator times on the current CUDA
// device, as the Cuda backend runs it in training (bf16 through Cuda<plait::bf16>, on the backend's stream). Each
// factory allocates and fills its buffers, and returns one run of the work, queued and not waited for; synchronize()
// waits. Only std types cross this seam (gpu_runner.hpp's rule: nvcc and g++ units see different Thrusts).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace plait::bench_gpu {

using Work = std::function<void()>;

struct Device {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  double memory_bytes = 0;   // total HBM
};
int device_count();              // 0 where there is no CUDA device (or no driver)
Device select_device(int index);  // makes `index` the current device (before any other CUDA call of the rank)
void* backend_stream();           // the Cuda backend's stream on the current device (a cudaStream_t)
void synchronize();               // the host waits for everything queued on that stream

// C (m x n) = A (m x k) B (k x n), bf16 in and out, fp32 accumulation, through cuBLASLt (Cuda<bf16>::gemm).
Work gemm(std::int64_t m, std::int64_t n, std::int64_t k);
// Causal attention forward then backward, `batch` sequences of `seq` tokens, `heads` heads of `head_dim`.
Work attention(std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim);
// One layer's memory-bound kernels, forward and backward, for `tokens` tokens: two RMSNorms and residual adds,
// RoPE on queries and keys, SwiGLU (what time_model.hpp's layer_memory_bound_bytes counts).
Work layer_kernels(std::int64_t hidden, std::int64_t heads, std::int64_t kv_heads, std::int64_t ffn,
                   std::int64_t tokens, double rope_theta);
// One AdamW update of `params` parameters as bf16-mixed training runs it: fp32 master weights and moments, bf16
// gradients in, the bf16 weight copy written.
Work adamw(std::int64_t params);
// Device memory of `bytes` floats for a collective (freed with the returned handle).
std::shared_ptr<float> device_floats(std::int64_t count);

}  // namespace plait::bench_gpu
