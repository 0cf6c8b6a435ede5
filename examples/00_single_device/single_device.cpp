// 00_single_device: the smallest complete use of plait. A LLaMA-style model on the Host backend (the CPU) learns one
// paragraph byte by byte, printing its loss, then writes what it has learnt. Every other layout is tested against this one.
#include <cstdio>
#include <string>

#include "plait/backend/host.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/data.hpp"
#include "plait/train/sample.hpp"
#include "plait/train/step.hpp"

int main() {
  // The layout is a type: SingleDevice is every parallel degree 1. The backend is a type too: Host<float> runs on
  // the CPU (OpenMP + BLAS); Host<double> is what the gradient checks use.
  using Model = plait::Transformer<plait::SingleDevice, plait::Host<float>>;

  // The shape is a plain value: 2 layers, hidden 64, 4 query heads sharing 2 key/value heads, byte vocabulary.
  plait::ModelConfig config;
  config.vocab = plait::train::ByteTokenizer::vocab;  // 256
  config.layers = 2;
  config.hidden = 64;
  config.heads = 4;
  config.kv_heads = 2;
  config.ffn = 176;
  config.max_seq = 64;
  Model model(config, /*seed=*/42);

  const std::string text =
      "plait trains transformer language models. A parallel layout is a type, and every layout computes the same "
      "function as one device with no parallelism: the same loss and the same gradients. ";
  // Windows of max_seq bytes cut at random (but reproducible) places; the target is the next byte.
  const plait::train::TokenDataset data(plait::train::ByteTokenizer::encode(text), config.max_seq, /*seed=*/42);

  plait::train::TrainConfig train;
  train.global_batch = 8;  // sequences per optimizer step
  train.micro_batch = 8;   // sequences per forward/backward (fewer: gradient accumulation)
  train.lr = {/*peak=*/1e-2, /*warmup_steps=*/5, /*total_steps=*/150, /*min_ratio=*/0.1};
  plait::train::Trainer<Model> trainer(model, train);

  std::printf("%lld parameters; the loss starts near ln(256) = 5.55\n", static_cast<long long>(config.parameters()));
  for (int step = 1; step <= 150; ++step) {
    const plait::train::StepMetrics m = trainer.step(data, step);
    if (step == 1 || step % 25 == 0)
      std::printf("step %3d  loss %.3f  lr %.4f  %6.0f tokens/s\n", step, m.loss, m.lr, m.tokens_per_s);
  }

  // Generate from a prompt: sampling at temperature 0.5 from the model's next-byte distribution.
  const auto tokens = plait::train::sample(model, plait::train::ByteTokenizer::encode("plait "), 80, 0.5, /*seed=*/1);
  std::printf("sample: %s\n", plait::train::ByteTokenizer::decode(tokens).c_str());
  return 0;
}
