// Timing for the CUDA benchmarks: the mean milliseconds of one call of `run` on `stream`, measured with CUDA events
// over `repeats` calls after one warm-up call.
#pragma once

#include "plait/backend/cuda.hpp"

namespace bench {

template <class F>
double milliseconds(F&& run, cudaStream_t stream, int repeats = 20) {
  run();  // warm up
  cudaEvent_t start, stop;
  PLAIT_CUDA_CHECK(cudaEventCreate(&start));
  PLAIT_CUDA_CHECK(cudaEventCreate(&stop));
  PLAIT_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < repeats; ++i) run();
  PLAIT_CUDA_CHECK(cudaEventRecord(stop, stream));
  PLAIT_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  PLAIT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / repeats;
}

}  // namespace bench
