// The whole model and the Trainer's step for the GPU, compiled and linked in CI on machines without one: Transformer<
// Layout, Cuda<bf16>, Nccl> and Trainer<...> are instantiated in full (every member) for a single device, TP 2 with
// sequence parallelism, a 2-stage 1F1B pipeline and ZeRO-3, with checkpoint save and load. Cuda's buffers give no
// host access (no operator[], begin or end), so model, state, optimizer, trainer or checkpoint code that reads an
// element on the host stops this build. What it does not show: that the code is right on a GPU (the device
// checks, scripts/gpu-check.sh, do).
#include "plait/backend/cuda.hpp"
#include "plait/comm/nccl.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/step.hpp"

#include <cstdio>

namespace plait::cuda_model_check {

using B = Cuda<bf16>;
using Single = SingleDevice;
using TensorParallelSP = Layout<TensorParallel<2, SequenceParallel>>;
using Pipeline1F1B = Layout<Pipeline<2, OneFOneB>>;
using Zero3 = Layout<ZeroStage<3>>;

template <class L>
using Model = Transformer<L, B, comm::Nccl>;

static_assert(concepts::Backend<B>);

}  // namespace plait::cuda_model_check

#define PLAIT_INSTANTIATE(L)                                                                                    \
  template class plait::model::Transformer<L, plait::cuda_model_check::B, plait::comm::Nccl>;                   \
  template class plait::train::Trainer<plait::cuda_model_check::Model<L>>;                                      \
  template void plait::train::save_checkpoint(const std::string&, plait::cuda_model_check::Model<L>&,           \
                                              plait::train::AdamW<plait::cuda_model_check::B>&, std::int64_t); \
  template std::int64_t plait::train::load_checkpoint(const std::string&, plait::cuda_model_check::Model<L>&,  \
                                                      plait::train::AdamW<plait::cuda_model_check::B>&);

PLAIT_INSTANTIATE(plait::cuda_model_check::Single)
PLAIT_INSTANTIATE(plait::cuda_model_check::TensorParallelSP)
PLAIT_INSTANTIATE(plait::cuda_model_check::Pipeline1F1B)
PLAIT_INSTANTIATE(plait::cuda_model_check::Zero3)

int main() {
  std::puts("Transformer<L, Cuda<bf16>, Nccl> and Trainer<...> (step, checkpoint save and load) compiled for L = "
            "SingleDevice, TensorParallel<2, SequenceParallel>, Pipeline<2, OneFOneB>, ZeroStage<3>");
  return 0;
}
