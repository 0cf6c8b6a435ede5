// The GPU half of the whole-model check (model_step.hpp): one training step of the Cuda<bf16> model.
#include "plait/backend/cuda.hpp"

#include "model_step.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/optimizer.hpp"

namespace plait::cuda_test {

ModelStep cuda_bf16_step(const ModelConfig& config, std::uint64_t seed, const std::vector<std::int32_t>& tokens,
                         const std::vector<std::int32_t>& targets, std::int64_t batch, std::int64_t seq, double lr,
                         double eps) {
  using B = Cuda<bf16>;
  Transformer<SingleDevice, B> model(config, seed);
  ModelStep out;
  out.weights = model.gather_parameters();
  model.zero_grad();
  out.loss = model.forward_backward(tokens.data(), targets.data(), batch, seq, 1.0 / static_cast<double>(batch * seq));
  auto& state = model.state();
  std::vector<float> grads(static_cast<std::size_t>(state.local_grads_size()));
  B::download(state.local_grads(), grads.data(), state.local_grads_size());
  for (const auto& p : model.parameters().infos())
    out.gradients.emplace_back(p.name, std::vector<double>(grads.begin() + p.offset, grads.begin() + p.offset + p.numel()));
  state.reduce_gradients();
  train::AdamW<B> optimizer(state.optimizer_elements(), {.eps = eps, .weight_decay = 0.0});
  optimizer.step(state, lr, 1.0);
  std::vector<float> masters(static_cast<std::size_t>(state.optimizer_elements()));
  B::download(state.masters(), masters.data(), state.optimizer_elements());
  out.masters.assign(masters.begin(), masters.end());
  B::synchronize();
  return out;
}

}  // namespace plait::cuda_test
