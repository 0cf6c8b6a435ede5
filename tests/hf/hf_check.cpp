// The import half of the Hugging Face round trip, under a layout other than the one that trained (TP 2 over the
// two ranks of `mpirun -np 2`): the plait checkpoint CKPT loaded as a checkpoint and the Hugging Face model HF_DIR
// (plait-export-hf's output of CKPT) loaded with --init-from-hf's loader must hold the same parameters, bit for bit;
// then the last position's logits of each token sequence given, from the checkpoint's model, for the independent
// reference forward (llama_reference.py) to check. Both models pad the checkpoint's vocabulary as plait-train does
// under TP 2 (to a multiple of 256): the import fills only the tokenizer's rows, and the logits are the tokenizer's.
// Prints "bit-identical: ..." and one "logits ..." line per sequence.
// Usage: mpirun -np 2 hf_check CKPT HF_DIR TOKENS[,TOKENS...] [TOKENS,...]   (each argument one sequence)
#include <cstdint>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "plait/backend/host.hpp"
#include "plait/comm/mpi.hpp"
#include "plait/model/transformer.hpp"
#include "plait/train/checkpoint.hpp"
#include "plait/train/hugging_face.hpp"

namespace {

using Layout = plait::Layout<plait::TensorParallel<2>>;
using Backend = plait::Host<float>;
using Model = plait::Transformer<Layout, Backend, plait::comm::Mpi>;

std::vector<std::int32_t> parse_tokens(const std::string& text) {
  std::vector<std::int32_t> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(static_cast<std::int32_t>(std::stoi(item)));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  plait::comm::MpiSession mpi(&argc, &argv);
  plait::comm::Mpi world;
  const bool lead = world.rank() == 0;
  try {
    PLAIT_CHECK(argc >= 4, "usage: mpirun -np 2 hf_check CKPT HF_DIR TOKENS[,TOKENS...] ...");
    const std::string checkpoint = argv[1], hf = argv[2];
    plait::ModelConfig config = plait::train::detail::read_metadata(checkpoint).model;
    std::vector<std::vector<std::int32_t>> sequences;
    for (int i = 3; i < argc; ++i) sequences.push_back(parse_tokens(argv[i]));
    const std::int64_t seq = static_cast<std::int64_t>(sequences[0].size());
    for (const auto& s : sequences) PLAIT_CHECK(static_cast<std::int64_t>(s.size()) == seq, "sequences of one length, please");
    config.max_seq = std::max(config.max_seq, seq);
    config.tokenizer_vocab = config.vocab;  // the checkpoint's rows; padded here as plait-train pads under TP 2
    config.vocab = (config.vocab + 255) / 256 * 256;

    plait::ProcessGrid<plait::comm::Mpi> grid(world, 2, 1);
    Model saved(config, 1, grid), imported(config, 2, grid);  // other seeds: everything must come from the files
    plait::train::AdamW<Backend> saved_optimizer(saved.state().optimizer_elements(), {});
    plait::train::AdamW<Backend> imported_optimizer(imported.state().optimizer_elements(), {});
    plait::train::load_checkpoint(checkpoint, saved, saved_optimizer);
    plait::train::load_hugging_face(hf, imported, imported_optimizer);

    const auto want = saved.gather_parameters(), got = imported.gather_parameters();
    PLAIT_CHECK(want.size() == got.size(), "the two models hold ", want.size(), " and ", got.size(), " tensors");
    std::int64_t elements = 0;
    for (std::size_t t = 0; t < want.size(); ++t) {
      for (std::size_t i = 0; i < want[t].second.size(); ++i)
        PLAIT_CHECK(want[t].second[i] == got[t].second[i], "DIFFER: ", want[t].first, "[", i, "] is ", want[t].second[i],
                    " in the checkpoint and ", got[t].second[i], " after the Hugging Face round trip");
      elements += static_cast<std::int64_t>(want[t].second.size());
    }
    if (lead)
      std::printf("bit-identical: %zu tensors, %lld parameters (checkpoint vs Hugging Face import under TP 2)\n",
                  want.size(), static_cast<long long>(elements));

    std::vector<std::int32_t> tokens;
    for (const auto& s : sequences) tokens.insert(tokens.end(), s.begin(), s.end());
    const std::vector<double> logits = saved.last_logits(tokens.data(), static_cast<std::int64_t>(sequences.size()), seq);
    for (std::size_t b = 0; lead && b < sequences.size(); ++b) {
      std::printf("logits %zu", b);
      const auto vocab = static_cast<std::size_t>(config.unpadded_vocab());
      for (std::size_t v = 0; v < vocab; ++v) std::printf(" %.9g", logits[b * vocab + v]);
      std::printf("\n");
    }
    return 0;
  } catch (const std::exception& e) {
    if (lead) std::fprintf(stderr, "hf_check: error: %s\n", e.what());
    return 2;
  }
}
