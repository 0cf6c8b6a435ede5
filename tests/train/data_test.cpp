// Byte tokenizer and token windows: targets are inputs shifted by one; a global batch is the same whether read
// at once or in disjoint parts (what data-parallel ranks do).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "plait/train/data.hpp"

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
  data.batch(3, 0, 8, in.data(), tg.data());
  for (int i = 0; i < 8 * 16; ++i) CHECK(tg[i] == (in[i] + 1) % 251);
  data.batch(3, 0, 5, in2.data(), tg2.data());
  data.batch(3, 5, 3, in2.data() + 5 * 16, tg2.data() + 5 * 16);
  CHECK(in == in2);
  CHECK(tg == tg2);
  std::vector<std::int32_t> other(8 * 16), other_t(8 * 16);
  data.batch(4, 0, 8, other.data(), other_t.data());
  CHECK(other != in);  // another step, other windows
}

TEST_CASE("too little data or a missing file is a clear error", "[train][data]") {
  CHECK_THROWS_WITH(TokenDataset(std::vector<std::int32_t>(10, 1), 16, 1), Catch::Contains("too few"));
  CHECK_THROWS_WITH(plait::train::read_text_file("/nonexistent/plait.txt"), Catch::Contains("--data"));
}

namespace {

// A shard as llm.c writes it (version 1: uint16, 2: uint32), by hand; vocab goes in the fourth header word.
std::string write_shard(const std::string& name, const std::vector<std::uint32_t>& tokens, int version, int vocab = 0,
                        std::int64_t drop_bytes = 0) {
  const std::string path = (std::filesystem::temp_directory_path() / ("plait_shard_test_" + name)).string();
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
      (std::filesystem::temp_directory_path() / "plait_shard_test_glob_?.bin").string());
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
                   (std::filesystem::temp_directory_path() / "plait_shard_test_vocab_?.bin").string());
             }),
             Catch::Contains("records a vocabulary of 200"));
  CHECK_THAT(error_of([] { plait::train::describe_data("/nonexistent/plait_*.bin"); }),
             Catch::Contains("no file matches --data '/nonexistent/plait_*.bin'"));
}
