// plait-train on the Host backend: one MPI rank per process, its share of the node's cores as OpenMP threads, MFU
// against the BLAS GEMM rate measured at start (or --peak-gflops), in the precision --dtype names. Each ZeRO stage's
// layouts are instantiated in a translation unit of their own (layouts_zero*.cpp).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "options.hpp"
#include "run.hpp"
#include "plait/backend/gemm_rate.hpp"
#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/kernels/blas_core.hpp"

namespace trainer {

template <class Layout, class T>
int run(const Options& o) {
  using Backend = plait::Host<T>;
  plait::comm::Mpi world;
  // Ranks sharing a node share its cores (unless OMP_NUM_THREADS says otherwise).
  if (std::getenv("OMP_NUM_THREADS") == nullptr)
    omp_set_num_threads(std::max(1, omp_get_num_procs() / world.node_local_size()));
  Device device;
  device.peak_flops = o.peak_gflops * 1e9;
  device.peak_source = "--peak-gflops";
  if (device.peak_flops <= 0) {
    device.peak_flops = plait::backend::measure_gemm_flops<Backend>();
    world.all_reduce(&device.peak_flops, 1, plait::comm::ReduceOp::sum);  // every rank's share, measured together
    device.peak_flops /= world.size();
    device.peak_source = "BLAS GEMM rate measured now";
  }
  device.per_rank = std::to_string(omp_get_max_threads()) + " OpenMP threads per rank, OpenBLAS " +
                    plait::kernels::blas_core() + " kernels";
  return train<Layout, Backend>(o, world, device);
}

// The layouts of one ZeRO stage that plait-train has compiled in: TP 1, 2, 4, 8, with and without SP, in fp32 (the
// host's default). Host<double> (fp64) and Host<bf16> (bf16 weights and activations, fp32 gradients, master weights
// and moments: the CPU twin of Cuda<bf16>) are built on first use, one precision per library (jit.hpp): each
// precision compiled in would add about half of these files' compile time again.
template <int Zero>
int run_zero(const Options& o) {
  using Z = plait::ZeroStage<Zero>;
  auto with = [&]<class Layout>() { return run<Layout, float>(o); };
  using plait::Layout;
  using plait::SequenceParallel;
  using plait::TensorParallel;
  switch (o.tp * 2 + (o.sp ? 1 : 0)) {
    case 2: return with.template operator()<Layout<Z>>();
    case 4: return with.template operator()<Layout<TensorParallel<2>, Z>>();
    case 5: return with.template operator()<Layout<TensorParallel<2, SequenceParallel>, Z>>();
    case 8: return with.template operator()<Layout<TensorParallel<4>, Z>>();
    case 9: return with.template operator()<Layout<TensorParallel<4, SequenceParallel>, Z>>();
    case 16: return with.template operator()<Layout<TensorParallel<8>, Z>>();
    case 17: return with.template operator()<Layout<TensorParallel<8, SequenceParallel>, Z>>();
  }
  plait::core::fail("no compiled-in layout for --tp ", o.tp, o.sp ? " --sp" : "");
}

int run_zero0(const Options& o);
int run_zero1(const Options& o);
int run_zero2(const Options& o);
int run_zero3(const Options& o);

}  // namespace trainer
