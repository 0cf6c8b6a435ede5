// plait-train on GPUs (--device cuda): Cuda<bf16> over NCCL, one rank per GPU, each rank on the GPU of its rank
// within the node; bf16 weights and activations with fp32 gradients, master weights and moments (the mixed
// precision whose CPU twin is --device host --dtype bf16). MFU against the GPU's dense bf16 peak: 989 TFLOP/s for
// H100 and H200 SXM, 312 for A100 (the figures MFU is usually quoted against), or --peak-tflops; for another GPU
// the cuBLASLt GEMM rate measured at start. Compiled by nvcc only (layouts_cuda.cu, and layouts built on first use).
#pragma once

#if !defined(__CUDACC__)
#error "run_cuda.hpp is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <string>

#include "options.hpp"
#include "run.hpp"
#include "plait/backend/cuda.hpp"
#include "plait/backend/gemm_rate.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/comm/nccl.hpp"

namespace trainer {

// The dense bf16 tensor-core peak of the GPUs plait is usually run on, by name; 0 for others.
inline double known_peak_flops(const std::string& gpu) {
  if (gpu.find("H100") != std::string::npos || gpu.find("H200") != std::string::npos) return 989e12;
  if (gpu.find("A100") != std::string::npos) return 312e12;
  return 0.0;
}

template <class Layout>
int run_on_cuda(const Options& o) {
  using Backend = plait::Cuda<plait::bf16>;
  plait::comm::Mpi mpi;
  // One GPU per rank, chosen by the rank's place on its node; every rank checks before any collective on GPUs.
  int gpus = 0;
  if (cudaGetDeviceCount(&gpus) != cudaSuccess) gpus = 0;
  const int local = mpi.node().rank(), local_size = mpi.node_local_size();
  std::string error;
  if (gpus == 0)
    error = "--device cuda: no CUDA device is visible (cudaGetDeviceCount found none; check the driver and "
            "CUDA_VISIBLE_DEVICES), or train on the CPU with --device host";
  else if (local_size > gpus)
    error = "--device cuda: " + std::to_string(local_size) + " ranks share a node with " + std::to_string(gpus) +
            " GPU(s); run at most one rank per GPU (mpirun -np " + std::to_string(gpus) + " per node)";
  plait::comm::agree_or_throw(mpi, error);
  PLAIT_CUDA_CHECK(cudaSetDevice(local));
  cudaDeviceProp props{};
  PLAIT_CUDA_CHECK(cudaGetDeviceProperties(&props, local));
  const std::string gpu = props.name;

  plait::comm::Nccl world(mpi, Backend::stream());
  Device device;
  device.per_rank = "one GPU per rank (" + gpu + ", sm_" + std::to_string(props.major) + std::to_string(props.minor) +
                    ", " + std::to_string(props.totalGlobalMem >> 30) + " GiB)";
  device.peak_flops = o.peak_gflops * 1e9;
  device.peak_source = "--peak-tflops";
  if (device.peak_flops <= 0) {
    device.peak_flops = known_peak_flops(gpu);
    device.peak_source = gpu + "'s dense bf16 peak";
  }
  if (device.peak_flops <= 0) {
    device.peak_flops = plait::backend::measure_gemm_flops<Backend>();
    mpi.all_reduce(&device.peak_flops, 1, plait::comm::ReduceOp::sum);
    device.peak_flops /= mpi.size();
    device.peak_source = "cuBLASLt GEMM rate measured now";
  }
  return train<Layout, Backend>(o, world, device);
}

// The layouts plait-train has compiled in for GPUs (layouts_cuda.cu); others are built on first use with nvcc.
bool compiled_in_cuda(const Options& o);
int run_cuda(const Options& o);

}  // namespace trainer
