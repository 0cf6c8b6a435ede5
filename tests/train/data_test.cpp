// Byte tokenizer and token windows: targets are inputs shifted by one; a global batch is the same whether read
// at once or in disjoint parts (what data-parallel ranks do).
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "plait/train/data.hpp"
#include "scratch.hpp"

using plait::train::ByteTokenizer;
using plait::train::TokenDataset;

TEST_CASE("the byte tokenizer round-trips any bytes", "[train][data]") {
  std::string text = "plait \n\t";
  text.push_back(static_cast<char>(0xC3));
  text.push_back(static_cast<char>(0xA9));
  const auto tokens = ByteTokenizer::encode(text);
  CHECK(tokens.size() == text.size());
  for (auto t : tokens) CHECK((t >= 0 && t < 256));
  CHECK(ByteTokenizer::decode(tokens) == text);
}

TEST_CASE("windows: targets are the next tokens and parts of a batch equal the whole", "[train][data]") {
  std::vector<std::int32_t> stream(1000);
  for (int i = 0; i < 1000; ++i) stream[i] = i % 251;
  TokenDataset data(stream, 16, 9);
  std::vector<std::int32_t> in(8 * 16), tg(8 * 16), in2(8 * 16), tg2(8 * 16);
  data.batch(24, 8, in.data(), tg.data());
  for (int i = 0; i < 8 * 16; ++i) CHECK(tg[i] == (in[i] + 1) % 251);
  data.batch(24, 5, in2.data(), tg2.data());
  data.batch(29, 3, in2.data() + 5 * 16, tg2.data() + 5 * 16);
  CHECK(in == in2);
  CHECK(tg == tg2);
  std::vector<std::int32_t> other(8 * 16), other_t(8 * 16);
  data.batch(32, 8, other.data(), other_t.data());
  CHECK(other != in);  // the next step, other windows
}

// The window a sequence got, as the position of its first token in the stream (the stream counts up).
std::int64_t start_of(const TokenDataset& data, std::int64_t n) {
  std::vector<std::int32_t> in(static_cast<std::size_t>(data.seq())), tg(in.size());
  data.window(n, in.data(), tg.data());
  return in[0];
}

TEST_CASE("an epoch visits every window once in a shuffled order and the next epoch cuts the stream elsewhere", "[train][data]") {
  for (std::int64_t size : {18, 40, 1000, 4099}) {
    std::vector<std::int32_t> stream(static_cast<std::size_t>(size));
    for (std::int64_t i = 0; i < size; ++i) stream[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    const TokenDataset data(stream, 16, 3);
    const std::int64_t w = data.windows_per_epoch();
    CAPTURE(size, w);
    REQUIRE(w == std::max<std::int64_t>(1, (size - 1) / 16 - ((size - 1) / 16 >= 2)));
    for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
      std::vector<std::int64_t> starts;
      for (std::int64_t n = epoch * w; n < (epoch + 1) * w; ++n) starts.push_back(start_of(data, n));
      const std::int64_t offset = *std::min_element(starts.begin(), starts.end());
      CHECK((offset >= 0 && offset < 16));
      std::vector<std::int64_t> sorted = starts;
      std::sort(sorted.begin(), sorted.end());
      for (std::int64_t k = 0; k < w; ++k) CHECK(sorted[static_cast<std::size_t>(k)] == offset + 16 * k);  // each once
      CHECK(sorted.back() + 16 + 1 <= size);  // the last target is in the stream
      if (w >= 8) CHECK(starts != sorted);    // shuffled
    }
  }
  std::vector<std::int32_t> stream(4099);
  for (int i = 0; i < 4099; ++i) stream[static_cast<std::size_t>(i)] = i;
  const TokenDataset data(stream, 16, 3), reseeded(stream, 16, 4);
  const std::int64_t w = data.windows_per_epoch();
  std::set<std::int64_t> offsets;
  for (std::int64_t epoch = 0; epoch < 8; ++epoch) offsets.insert(start_of(data, epoch * w) % 16);
  CHECK(offsets.size() > 1);  // epochs cut the stream at other offsets
  std::int64_t same = 0;
  for (std::int64_t n = 0; n < 64; ++n) same += start_of(data, n) == start_of(reseeded, n);
  CHECK(same < 8);  // another seed, another order
}

TEST_CASE("validation windows are fixed and spread evenly and repeat only past the stream's windows", "[train][data]") {
  std::vector<std::int32_t> stream(1000);
  for (int i = 0; i < 1000; ++i) stream[static_cast<std::size_t>(i)] = i;
  const TokenDataset data(stream, 16, 3);
  std::vector<std::int32_t> in(16), tg(16);
  std::set<std::int32_t> starts;
  for (std::int64_t i = 0; i < 10; ++i) {
    data.fixed_window(i, 10, in.data(), tg.data());
    CHECK(in[0] % 16 == 0);
    CHECK(tg[15] == in[15] + 1);
    starts.insert(in[0]);
  }
  CHECK(starts.size() == 10);
  CHECK(*starts.rbegin() >= 800);  // spread over the stream, not its first windows
  data.fixed_window(0, 2 * data.windows_per_epoch(), in.data(), tg.data());
  std::vector<std::int32_t> again(16);
  data.fixed_window(data.windows_per_epoch(), 2 * data.windows_per_epoch(), again.data(), tg.data());
  CHECK(in == again);
}

TEST_CASE("too little data or a missing file is a clear error", "[train][data]") {
  CHECK_THROWS_WITH(TokenDataset(std::vector<std::int32_t>(10, 1), 16, 1), Catch::Contains("too few"));
  CHECK_THROWS_WITH(plait::train::read_text_file("/nonexistent/plait.txt"), Catch::Contains("--data"));
}

namespace {

// A shard as llm.c writes it (version 1: uint16, 2: uint32), by hand; vocab goes in the fourth header word.
std::string write_shard(const std::string& name, const std::vector<std::uint32_t>& tokens, int version, int vocab = 0,
                        std::int64_t drop_bytes = 0) {
  const std::string path = plait::test::scratch_path("plait_shard_test_" + name);
  std::int32_t header[256] = {20240520, version, static_cast<std::int32_t>(tokens.size()), vocab};
  std::string bytes(reinterpret_cast<const char*>(header), sizeof header);
  for (std::uint32_t t : tokens) {
    if (version == 1) {
      const auto v = static_cast<std::uint16_t>(t);
      bytes.append(reinterpret_cast<const char*>(&v), 2);
    } else {
      bytes.append(reinterpret_cast<const char*>(&t), 4);
    }
  }
  bytes.resize(bytes.size() - static_cast<std::size_t>(drop_bytes));
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const plait::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("token shards: uint16 and uint32 tokens read back and a glob concatenates them in order", "[train][data]") {
  const std::string a = write_shard("glob_a.bin", {1, 2, 65535, 7}, 1, 70000);
  const std::string b = write_shard("glob_b.bin", {69999, 0, 3}, 2, 70000);
  CHECK(plait::train::is_token_shard(a));
  const auto d = plait::train::describe_data(
      plait::test::scratch_path("plait_shard_test_glob_?.bin"));
  REQUIRE(d.shards);
  REQUIRE(d.files.size() == 2);
  CHECK(d.tokens == 7);
  CHECK(d.vocab == 70000);
  CHECK(plait::train::read_tokens(d, d.vocab) == std::vector<std::int32_t>{1, 2, 65535, 7, 69999, 0, 3});
}

TEST_CASE("token shards: a truncated file or a wrong version or an out-of-vocabulary token or mixed inputs are named", "[train][data]") {
  const std::string cut = write_shard("cut.bin", {1, 2, 3, 4}, 1, 0, 3);
  CHECK_THAT(error_of([&] { plait::train::read_shard_header(cut); }),
             Catch::Contains("holds 1029 bytes, its header says 4 tokens of 2 bytes (1032 bytes): the file is truncated"));
  const std::string v3 = write_shard("v3.bin", {1}, 3);
  CHECK_THAT(error_of([&] { plait::train::read_shard_header(v3); }), Catch::Contains("has version 3"));
  const std::string big = write_shard("big.bin", {1, 300}, 1);
  CHECK_THAT(error_of([&] { plait::train::read_shard(big, 256); }),
             Catch::Contains("token 300 at position 1 of shard") && Catch::Contains("outside the vocabulary of 256"));
  const std::string v1 = write_shard("vocab_a.bin", {1}, 1, 100), v2 = write_shard("vocab_b.bin", {1}, 1, 200);
  CHECK_THAT(error_of([&] {
               plait::train::describe_data(
                   plait::test::scratch_path("plait_shard_test_vocab_?.bin"));
             }),
             Catch::Contains("records a vocabulary of 200"));
  CHECK_THAT(error_of([] { plait::train::describe_data("/nonexistent/plait_*.bin"); }),
             Catch::Contains("no file matches --data '/nonexistent/plait_*.bin'"));
}
