// Byte tokenizer and token windows: targets are inputs shifted by one; a global batch is the same whether read
// at once or in disjoint parts (what data-parallel ranks do).
#include <catch2/catch.hpp>

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
