// Token data: a byte-level tokenizer (vocabulary 256, no merges), token shards in the llm.c / nanoGPT format, and a
// dataset that cuts (input, target) windows of seq + 1 tokens from one token stream, epoch by epoch. Which window a
// sequence gets depends only on (seed, its number in training order), so data-parallel ranks reading disjoint parts
// of a global batch see exactly what one rank would.
#pragma once

#include <glob.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
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

// A token shard: a header of 256 int32 (magic 20240520, version 1 for uint16 tokens or 2 for uint32, the token
// count; plait's scripts/prepare_data.py also writes the vocabulary size in the fourth, which llm.c leaves 0), then
// the tokens.
struct ShardHeader {
  static constexpr std::int32_t magic = 20240520;
  static constexpr std::int64_t bytes = 256 * 4;
  int version = 1;
  std::int64_t tokens = 0;
  std::int64_t vocab = 0;  // 0: not recorded
  std::int64_t token_bytes() const { return version == 1 ? 2 : 4; }
};

// Whether the file starts with a shard's magic (else --data is text).
inline bool is_token_shard(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::int32_t first = 0;
  return in.read(reinterpret_cast<char*>(&first), 4) && first == ShardHeader::magic;
}

// Reads and checks a shard's header against the file's size: a wrong version or a truncated file is named.
inline ShardHeader read_shard_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PLAIT_CHECK(in.good(), "cannot open token shard '", path, "'");
  std::int32_t h[256] = {};
  PLAIT_CHECK(in.read(reinterpret_cast<char*>(h), sizeof h).good(), "token shard '", path,
              "' is shorter than its 1024-byte header: the file is truncated");
  PLAIT_CHECK(h[0] == ShardHeader::magic, "'", path, "' is not a token shard (its first int32 is ", h[0], ", not ",
              ShardHeader::magic, ")");
  PLAIT_CHECK(h[1] == 1 || h[1] == 2, "token shard '", path, "' has version ", h[1],
              ": plait reads version 1 (uint16 tokens) and 2 (uint32 tokens)");
  ShardHeader header;
  header.version = h[1];
  header.tokens = static_cast<std::uint32_t>(h[2]);
  header.vocab = h[3] > 0 ? h[3] : 0;
  std::error_code error;
  const auto size = static_cast<std::int64_t>(std::filesystem::file_size(path, error));
  PLAIT_CHECK(!error, "cannot read the size of token shard '", path, "'");
  const std::int64_t expected = ShardHeader::bytes + header.tokens * header.token_bytes();
  PLAIT_CHECK(size == expected, "token shard '", path, "' holds ", size, " bytes, its header says ", header.tokens,
              " tokens of ", header.token_bytes(), " bytes (", expected, " bytes): the file is ",
              size < expected ? "truncated; write it again" : "longer than its header says; write it again");
  return header;
}

// The shard's tokens, each checked against the vocabulary (when vocab > 0).
inline std::vector<std::int32_t> read_shard(const std::string& path, std::int64_t vocab) {
  const ShardHeader header = read_shard_header(path);
  std::ifstream in(path, std::ios::binary);
  in.seekg(ShardHeader::bytes);
  std::vector<std::int32_t> out(static_cast<std::size_t>(header.tokens));
  std::vector<char> raw(static_cast<std::size_t>(header.tokens * header.token_bytes()));
  PLAIT_CHECK(in.read(raw.data(), static_cast<std::streamsize>(raw.size())).good(), "error while reading token shard '",
              path, "'");
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::uint32_t t = 0;
    if (header.version == 1) {
      std::uint16_t v;
      std::memcpy(&v, raw.data() + 2 * i, 2);
      t = v;
    } else {
      std::memcpy(&t, raw.data() + 4 * i, 4);
    }
    PLAIT_CHECK(vocab <= 0 || t < static_cast<std::uint64_t>(vocab), "token ", t, " at position ", i, " of shard '",
                path, "' is outside the vocabulary of ", vocab, ": give the tokenizer's --vocab");
    out[i] = static_cast<std::int32_t>(t);
  }
  return out;
}

// The files --data names: a path, or a glob pattern (sorted), e.g. "data/train_*.bin".
inline std::vector<std::string> data_files(const std::string& spec) {
  if (spec.find_first_of("*?[") == std::string::npos) return {spec};
  glob_t g{};
  const int status = ::glob(spec.c_str(), 0, nullptr, &g);
  std::vector<std::string> files;
  if (status == 0)
    for (std::size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  PLAIT_CHECK(!files.empty(), "no file matches --data '", spec, "'");
  std::sort(files.begin(), files.end());
  return files;
}

// What --data holds, from headers and sizes alone: text (bytes are tokens) or token shards (their total count and
// the vocabulary the first one records, which all must agree on).
struct DataSource {
  std::vector<std::string> files;
  bool shards = false;
  std::int64_t tokens = 0;
  std::int64_t vocab = 0;  // shards: as recorded (0: not recorded); text: 256
};

inline DataSource describe_data(const std::string& spec) {
  DataSource d;
  d.files = data_files(spec);
  d.shards = is_token_shard(d.files.front());
  if (!d.shards) {
    PLAIT_CHECK(d.files.size() == 1, "--data '", spec, "' names several files and '", d.files.front(),
                "' is not a token shard: give one text file, or token shards (scripts/prepare_data.py writes them)");
    open_text_file(d.files.front());
    std::error_code error;
    d.tokens = static_cast<std::int64_t>(std::filesystem::file_size(d.files.front(), error));
    PLAIT_CHECK(!error, "cannot read the size of data file '", d.files.front(), "'");
    d.vocab = ByteTokenizer::vocab;
    return d;
  }
  for (const std::string& f : d.files) {
    PLAIT_CHECK(is_token_shard(f), "'", f, "' is not a token shard, and '", d.files.front(),
                "' is: --data takes text or shards, not both");
    const ShardHeader h = read_shard_header(f);
    if (f == d.files.front()) d.vocab = h.vocab;
    PLAIT_CHECK(h.vocab == d.vocab, "token shard '", f, "' records a vocabulary of ", h.vocab, " and '",
                d.files.front(), "' one of ", d.vocab, ": shards of one run come from one tokenizer");
    d.tokens += h.tokens;
  }
  return d;
}

// The token stream of --data: a text file's bytes, or the shards' tokens one after the other.
inline std::vector<std::int32_t> read_tokens(const DataSource& d, std::int64_t vocab) {
  if (!d.shards) return ByteTokenizer::encode(read_text_file(d.files.front()));
  std::vector<std::int32_t> all;
  all.reserve(static_cast<std::size_t>(d.tokens));
  for (const std::string& f : d.files) {
    const std::vector<std::int32_t> part = read_shard(f, vocab);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

// The windows a token stream is cut into, and the order training visits them. An epoch is W windows of seq + 1
// tokens (seq inputs, their targets shifted by one) that start seq tokens apart, from an offset drawn per epoch (so
// later epochs see other cuts); the epoch visits its W windows in a shuffled order (a keyed bijection of 0..W-1).
// The n-th sequence of training (n = (step - 1) x global batch + index in it) is window n mod W of epoch n / W: a
// function of (seed, n) alone, so every layout and every resume sees the same data, and each epoch sees every
// window once.
class TokenDataset {
 public:
  TokenDataset(std::vector<std::int32_t> tokens, std::int64_t seq, std::uint64_t seed)
      : tokens_(std::move(tokens)), seq_(seq), seed_(seed) {
    check_enough_tokens(static_cast<std::int64_t>(tokens_.size()), seq_);
    windows_ = (size() - 1) / seq_;
    if (windows_ >= 2) --windows_;  // one window less leaves at least seq tokens of slack for the epoch's offset
    slack_ = std::min(size() - 1 - windows_ * seq_, seq_ - 1);
  }

  std::int64_t seq() const { return seq_; }
  std::int64_t size() const { return static_cast<std::int64_t>(tokens_.size()); }
  std::int64_t windows_per_epoch() const { return windows_; }

  // The n-th sequence of training (0-based): inputs and targets, seq tokens each.
  void window(std::int64_t n, std::int32_t* inputs, std::int32_t* targets) const {
    const auto epoch = static_cast<std::uint64_t>(n / windows_);
    const core::CounterRng rng(seed_, epoch);
    const std::int64_t offset = static_cast<std::int64_t>(rng.bits(~0ull) % static_cast<std::uint64_t>(slack_ + 1));
    copy_window(offset + shuffled(rng, n % windows_) * seq_, inputs, targets);
  }

  // Sequences [first, first + count) of training, (count, seq) each.
  void batch(std::int64_t first, std::int64_t count, std::int32_t* inputs, std::int32_t* targets) const {
    for (std::int64_t i = 0; i < count; ++i) window(first + i, inputs + i * seq_, targets + i * seq_);
  }

  // Window i of a fixed set of n spread evenly over the stream (validation): the same windows at every call,
  // unshuffled, from offset 0; they repeat when n exceeds the windows the stream holds.
  void fixed_window(std::int64_t i, std::int64_t n, std::int32_t* inputs, std::int32_t* targets) const {
    const std::int64_t w = n <= windows_ ? i * windows_ / n : i % windows_;
    copy_window(w * seq_, inputs, targets);
  }

 private:
  void copy_window(std::int64_t start, std::int32_t* inputs, std::int32_t* targets) const {
    for (std::int64_t t = 0; t < seq_; ++t) {
      inputs[t] = tokens_[static_cast<std::size_t>(start + t)];
      targets[t] = tokens_[static_cast<std::size_t>(start + t + 1)];
    }
  }

  // A bijection of 0..windows_-1 keyed by the epoch's generator: a four-round Feistel network over the smallest
  // even number of bits that holds windows_, applied again to values that fall outside (cycle walking; fewer than
  // four rounds of it on average, since the domain is less than four times windows_).
  std::int64_t shuffled(const core::CounterRng& rng, std::int64_t w) const {
    int half = 1;
    while ((std::int64_t{1} << (2 * half)) < windows_) ++half;
    const std::uint64_t mask = (std::uint64_t{1} << half) - 1;
    auto x = static_cast<std::uint64_t>(w);
    do {
      std::uint64_t left = x >> half, right = x & mask;
      for (std::uint64_t round = 0; round < 4; ++round) {
        const std::uint64_t mixed = left ^ (rng.bits((round << 40) | right) & mask);
        left = right;
        right = mixed;
      }
      x = (left << half) | right;
    } while (x >= static_cast<std::uint64_t>(windows_));
    return static_cast<std::int64_t>(x);
  }

  std::vector<std::int32_t> tokens_;
  std::int64_t seq_;
  std::uint64_t seed_;
  std::int64_t windows_ = 1, slack_ = 0;
};

}  // namespace plait::train
