// A downstream program: builds a 2-layer LLaMA-style model on the Host backend, trains it for a few steps on a
// sentence, and prints the loss. Exits non-zero if the loss did not fall, so that it doubles as a test of the package.
#include <cstdio>
#include <string>

#include <plait/backend/host.hpp>
#include <plait/model/transformer.hpp>
#include <plait/train/data.hpp>
#include <plait/train/step.hpp>

int main() {
  using Model = plait::Transformer<plait::SingleDevice, plait::Host<float>>;

  plait::ModelConfig config;  // vocabulary 256: one token per byte
  config.layers = 2;
  config.hidden = 64;
  config.heads = 4;
  config.kv_heads = 2;
  config.ffn = 172;
  config.max_seq = 32;
  Model model(config, /*seed=*/1);

  const std::string text = "a downstream project trains a plait model through find_package or add_subdirectory. ";
  const plait::train::TokenDataset data(plait::train::ByteTokenizer::encode(text + text + text), config.max_seq, 1);

  plait::train::TrainConfig train;
  train.global_batch = 8;
  train.micro_batch = 8;
  train.lr = {/*peak=*/1e-2, /*warmup_steps=*/2, /*total_steps=*/20};
  plait::train::Trainer<Model> trainer(model, train);

  double first = 0.0, last = 0.0;
  for (int step = 1; step <= 20; ++step) {
    const plait::train::StepMetrics m = trainer.step(data, step);
    if (step == 1) first = m.loss;
    last = m.loss;
    if (step % 5 == 0 || step == 1) std::printf("step %2d  loss %.4f\n", step, m.loss);
  }
  std::printf("%s: %lld parameters, loss %.4f -> %.4f\n", last < first ? "ok" : "FAILED: the loss did not fall",
              static_cast<long long>(config.parameters()), first, last);
  return last < first ? 0 : 1;
}
