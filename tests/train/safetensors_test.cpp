// safetensors files: what plait writes reads back (F32 and F64 exactly, BF16 as the nearest bf16), a range of rows
// of one tensor reads alone, the data starts 8-byte aligned, F16 files read; and each kind of malformed file is
// refused with a sentence that says what is wrong.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "plait/core/dtype.hpp"
#include "plait/train/safetensors.hpp"
#include "scratch.hpp"

namespace {

using plait::train::SafetensorsDtype;
using plait::train::SafetensorsReader;
using plait::train::SafetensorsWriter;

std::string temp_file(const char* name) {
  return plait::test::scratch_path(std::string("plait_safetensors_") + name);
}

// A file of the header text `header` (its length as declared, unless `declared` says otherwise) and `data` bytes.
std::string handmade(const char* name, const std::string& header, std::size_t data, std::int64_t declared = -1) {
  const std::string path = temp_file(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::uint64_t length = declared < 0 ? header.size() : static_cast<std::uint64_t>(declared);
  out.write(reinterpret_cast<const char*>(&length), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  const std::vector<char> zeros(data, 0);
  out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  return path;
}

std::string refusal(const std::string& path) {
  try {
    SafetensorsReader reader(path);
  } catch (const plait::Error& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("safetensors: F32 BF16 and F64 tensors and metadata round-trip", "[train][safetensors]") {
  const std::string path = temp_file("round_trip.safetensors");
  std::vector<double> matrix(5 * 3), vector(7), wide(4);
  for (std::size_t i = 0; i < matrix.size(); ++i) matrix[i] = 0.1 * static_cast<double>(i) - 0.7;
  for (std::size_t i = 0; i < vector.size(); ++i) vector[i] = 1.0 / (1.0 + static_cast<double>(i));
  for (std::size_t i = 0; i < wide.size(); ++i) wide[i] = 1.0 + 1e-12 * static_cast<double>(i);  // needs F64
  {
    SafetensorsWriter writer(path,
                             {{"matrix", SafetensorsDtype::F32, {5, 3}},
                              {"vector", SafetensorsDtype::BF16, {7}},
                              {"empty", SafetensorsDtype::F32, {0, 3}},
                              {"wide", SafetensorsDtype::F64, {2, 2}}},
                             {{"format", "pt"}, {"note", "written by plait"}});
    writer.append(matrix.data(), 4);  // a tensor may come in several pieces
    writer.append(matrix.data() + 4, 11);
    writer.append(vector.data(), 7);
    writer.append(wide.data(), 4);
    writer.finish();
  }
  std::ifstream raw(path, std::ios::binary);
  std::uint64_t header_length = 0;
  raw.read(reinterpret_cast<char*>(&header_length), 8);
  CHECK((8 + header_length) % 8 == 0);  // the data starts aligned
  CHECK(std::filesystem::file_size(path) == 8 + header_length + 15 * 4 + 7 * 2 + 4 * 8);

  SafetensorsReader reader(path);
  CHECK(reader.metadata().at("note") == "written by plait");
  REQUIRE(reader.tensors().size() == 4);
  CHECK(reader.tensor("matrix").shape == std::vector<std::int64_t>{5, 3});
  CHECK(reader.tensor("vector").dtype == SafetensorsDtype::BF16);
  CHECK(reader.tensor("empty").elements() == 0);
  std::vector<float> m(15);
  reader.read("matrix", 0, 15, m.data());
  for (std::size_t i = 0; i < m.size(); ++i) CHECK(m[i] == static_cast<float>(matrix[i]));
  std::vector<double> v(7), w(4);
  reader.read("vector", 0, 7, v.data());
  for (std::size_t i = 0; i < v.size(); ++i)
    CHECK(v[i] == static_cast<double>(static_cast<float>(plait::bf16(static_cast<float>(vector[i])))));
  reader.read("wide", 0, 4, w.data());
  CHECK(w == wide);  // bit for bit

  // Rows 2..4 of the matrix alone.
  std::vector<double> rows(2 * 3);
  reader.read("matrix", 2 * 3, 2 * 3, rows.data());
  for (std::size_t i = 0; i < rows.size(); ++i) CHECK(rows[i] == static_cast<double>(static_cast<float>(matrix[6 + i])));
  CHECK_THROWS_WITH(reader.read("matrix", 12, 6, rows.data()), Catch::Contains("outside tensor 'matrix'"));
  CHECK_THROWS_WITH(reader.tensor("missing"), Catch::Contains("has no tensor named 'missing'"));
}

TEST_CASE("safetensors: F16 tensors read exactly", "[train][safetensors]") {
  const std::string header = R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]}})";
  const std::string path = temp_file("f16.safetensors");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::uint64_t length = header.size();
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << header;
    const std::uint16_t halves[5] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7C00};  // 1, -2, 0.333..., 2^-24, inf
    out.write(reinterpret_cast<const char*>(halves), sizeof halves);
  }
  SafetensorsReader reader(path);
  std::vector<double> x(5);
  reader.read("h", 0, 5, x.data());
  CHECK(x[0] == 1.0);
  CHECK(x[1] == -2.0);
  CHECK(x[2] == 0x155 / 1024.0 / 4.0 + 0.25);  // 0x3555: exponent -2, mantissa 0x155
  CHECK(x[3] == std::ldexp(1.0, -24));
  CHECK(std::isinf(x[4]));
}

TEST_CASE("safetensors: malformed files are refused with what is wrong", "[train][safetensors]") {
  const std::string tensor = R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  CHECK(refusal(handmade("fine", "{" + tensor + "}", 16)) == "accepted");

  CHECK_THAT(refusal(temp_file("missing")), Catch::Contains("cannot open"));
  {
    const std::string path = temp_file("short");
    std::ofstream(path, std::ios::binary) << "abc";
    CHECK_THAT(refusal(path), Catch::Contains("is truncated: 3 bytes, fewer than the 8 of its header length"));
  }
  CHECK_THAT(refusal(handmade("beyond", "{" + tensor + "}", 16, 1000)),
             Catch::Contains("header length 1000 reaches beyond the file"));
  CHECK_THAT(refusal(handmade("json", "{\"a\": [", 0)), Catch::Contains("header is not valid JSON"));
  CHECK_THAT(refusal(handmade("array", "[1, 2]", 0)), Catch::Contains("not a JSON object"));
  CHECK_THAT(refusal(handmade("overlap",
                              "{" + tensor + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16)),
             Catch::Contains("tensors 'a' and 'b' overlap"));
  CHECK_THAT(refusal(handmade("bounds", "{" + tensor + "}", 12)), Catch::Contains("out of bounds"));
  CHECK_THAT(refusal(handmade("size", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12)),
             Catch::Contains("needs 16 bytes, its data_offsets give 12"));
  CHECK_THAT(refusal(handmade("dtype", R"({"a":{"dtype":"F17","shape":[2,2],"data_offsets":[0,16]}})", 16)),
             Catch::Contains("unknown dtype 'F17'"));
  CHECK_THAT(refusal(handmade("hole", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[4,20]}})", 20)),
             Catch::Contains("bytes [0, 4) of the data buffer belong to no tensor"));
  CHECK_THAT(refusal(handmade("tail", "{" + tensor + "}", 24)), Catch::Contains("trailing bytes"));
  CHECK_THAT(refusal(handmade("offsets", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}})", 16)),
             Catch::Contains("end before they begin"));
  CHECK_THAT(refusal(handmade("shape", R"({"a":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}})", 16)),
             Catch::Contains("not a whole number"));
  CHECK_THAT(refusal(handmade("meta", R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("__metadata__ entry 'k' is not a string"));
}
