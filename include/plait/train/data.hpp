// Token data: a byte-level tokenizer (vocabulary 256, no merges) and a dataset that cuts (input, target) windows
// of seq + 1 tokens from one token stream. Which window a sequence gets depends only on (seed, step, index in the
// global batch), so data-parallel ranks reading disjoint parts of a global batch see exactly what one rank would.
#pragma once

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "plait/core/error.hpp"
#include "plait/core/rng.hpp"

namespace plait::train {

struct ByteTokenizer {
  static constexpr std::int64_t vocab = 256;
  static std::vector<std::int32_t> encode(std::string_view text) {
    std::vector<std::int32_t> out(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
    return out;
  }
  static std::string decode(const std::vector<std::int32_t>& tokens) {
    std::string out;
    out.reserve(tokens.size());
    for (std::int32_t t : tokens) out.push_back(static_cast<char>(static_cast<unsigned char>(t)));
    return out;
  }
};

inline std::ifstream open_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PLAIT_CHECK(in.good(), "cannot open data file '", path, "': check the path given to --data");
  return in;
}

// Throws unless `tokens` tokens hold at least one sequence of `seq` and its shifted targets.
inline void check_enough_tokens(std::int64_t tokens, std::int64_t seq) {
  PLAIT_CHECK(tokens > seq + 1, "the data has ", tokens, " tokens, too few for sequences of ", seq,
              " (+1 target): give more text or a shorter --seq-len");
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream in = open_text_file(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  PLAIT_CHECK(!in.bad(), "error while reading data file '", path, "'");
  return text;
}

class TokenDataset {
 public:
  TokenDataset(std::vector<std::int32_t> tokens, std::int64_t seq, std::uint64_t seed)
      : tokens_(std::move(tokens)), seq_(seq), seed_(seed) {
    check_enough_tokens(static_cast<std::int64_t>(tokens_.size()), seq_);
  }

  std::int64_t seq() const { return seq_; }
  std::int64_t size() const { return static_cast<std::int64_t>(tokens_.size()); }

  // Sequence `index` of the global batch of `step`: inputs and targets, seq tokens each.
  void window(std::int64_t step, std::int64_t index, std::int32_t* inputs, std::int32_t* targets) const {
    const core::CounterRng rng(seed_, static_cast<std::uint64_t>(step));
    const auto starts = static_cast<std::uint64_t>(size() - seq_ - 1);
    const auto start = static_cast<std::int64_t>(rng.bits(static_cast<std::uint64_t>(index)) % (starts + 1));
    for (std::int64_t t = 0; t < seq_; ++t) {
      inputs[t] = tokens_[static_cast<std::size_t>(start + t)];
      targets[t] = tokens_[static_cast<std::size_t>(start + t + 1)];
    }
  }

  // Sequences [first, first + count) of the global batch of `step`, (count, seq) each.
  void batch(std::int64_t step, std::int64_t first, std::int64_t count, std::int32_t* inputs, std::int32_t* targets) const {
    for (std::int64_t i = 0; i < count; ++i) window(step, first + i, inputs + i * seq_, targets + i * seq_);
  }

 private:
  std::vector<std::int32_t> tokens_;
  std::int64_t seq_;
  std::uint64_t seed_;
};

}  // namespace plait::train
