// plait-train's layouts for --device cuda that are compiled in: data parallelism alone at ZeRO 0 and 1 (one GPU, or
// one per rank). Every other layout is built on first use with nvcc (jit.hpp), as on the host.
#include "run_cuda.hpp"

bool trainer::compiled_in_cuda(const Options& o) {
  return o.tp == 1 && o.pp == 1 && o.checkpoint == "none" && o.schedule == "1f1b" && (o.zero == 0 || o.zero == 1);
}

int trainer::run_cuda(const Options& o) {
  if (o.zero == 1) return run_on_cuda<plait::Layout<plait::ZeroStage<1>>>(o);
  return run_on_cuda<plait::Layout<>>(o);
}
