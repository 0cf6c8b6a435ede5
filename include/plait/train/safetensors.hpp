// The safetensors file format, read and written: the format Hugging Face models are shared in. A file is an 8-byte
// little-endian header length N, N bytes of JSON (name -> {dtype, shape, data_offsets [begin, end) in the byte
// buffer that follows the header}, and an optional "__metadata__" map of strings), then the byte buffer: each
// tensor's elements in row-major order, little-endian. The reader checks everything before it reads a byte of data
// (the header against the file, every tensor's size against its dtype and shape, the tensors tiling the buffer with
// no overlap, hole or tail) and refuses a malformed file with a sentence that says what is wrong; it then reads any
// range of elements of one tensor (rows r0..r1 of a matrix, say) without reading the rest of the file. The writer
// declares every tensor first, writes the header (padded with spaces so the data starts 8-byte aligned), and then
// takes the tensors' values in the declared order, converting to each tensor's dtype as they come.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "plait/core/dtype.hpp"
#include "plait/core/error.hpp"

namespace plait::train {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; plait reads it as is");

// The format's element types. plait reads and writes the floating ones (F64, F32, BF16; F16 read only) and checks
// the sizes of all of them, so a file that also holds integer tensors is still a valid file.
enum class SafetensorsDtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64 };

namespace detail {

struct SafetensorsDtypeName {
  SafetensorsDtype dtype;
  const char* name;
  int bytes;
};
inline constexpr SafetensorsDtypeName safetensors_dtypes[] = {
    {SafetensorsDtype::BOOL, "BOOL", 1},       {SafetensorsDtype::U8, "U8", 1},   {SafetensorsDtype::I8, "I8", 1},
    {SafetensorsDtype::F8_E5M2, "F8_E5M2", 1}, {SafetensorsDtype::F8_E4M3, "F8_E4M3", 1},
    {SafetensorsDtype::I16, "I16", 2},         {SafetensorsDtype::U16, "U16", 2}, {SafetensorsDtype::F16, "F16", 2},
    {SafetensorsDtype::BF16, "BF16", 2},       {SafetensorsDtype::I32, "I32", 4}, {SafetensorsDtype::U32, "U32", 4},
    {SafetensorsDtype::F32, "F32", 4},         {SafetensorsDtype::I64, "I64", 8}, {SafetensorsDtype::U64, "U64", 8},
    {SafetensorsDtype::F64, "F64", 8}};

// IEEE half precision to double, exactly (every F16 value is a double).
inline double half_to_double(std::uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  double magnitude;
  if (exponent == 0) magnitude = std::ldexp(static_cast<double>(mantissa), -24);  // zero and subnormals
  else if (exponent == 31) magnitude = mantissa == 0 ? INFINITY : NAN;
  else magnitude = std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
  return sign ? -magnitude : magnitude;
}

}  // namespace detail

inline const char* safetensors_dtype_name(SafetensorsDtype d) {
  for (const auto& e : detail::safetensors_dtypes)
    if (e.dtype == d) return e.name;
  return "?";
}
inline int safetensors_dtype_bytes(SafetensorsDtype d) {
  for (const auto& e : detail::safetensors_dtypes)
    if (e.dtype == d) return e.bytes;
  return 0;
}
inline bool safetensors_is_float(SafetensorsDtype d) {
  return d == SafetensorsDtype::F16 || d == SafetensorsDtype::BF16 || d == SafetensorsDtype::F32 ||
         d == SafetensorsDtype::F64;
}

// One tensor of a file: its name, element type, shape, and where its bytes lie in the byte buffer.
struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<std::int64_t> shape;  // empty: a scalar (one element)
  std::int64_t begin = 0, end = 0;  // [begin, end) in bytes, from the start of the byte buffer
  std::int64_t elements() const {
    std::int64_t n = 1;
    for (std::int64_t s : shape) n *= s;
    return n;
  }
};

// A safetensors file opened for reading: the header parsed and checked on construction, the data read on demand.
class SafetensorsReader {
 public:
  // The largest header accepted: real headers are a few MB; a larger "length" is a damaged or foreign file.
  static constexpr std::uint64_t max_header_bytes = std::uint64_t(100) << 20;

  explicit SafetensorsReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    PLAIT_CHECK(in_.good(), "cannot open the safetensors file '", path, "': check the path");
    in_.seekg(0, std::ios::end);
    const auto file_bytes = static_cast<std::uint64_t>(in_.tellg());
    in_.seekg(0);
    PLAIT_CHECK(file_bytes >= 8, "safetensors file '", path, "' is truncated: ", file_bytes,
                " bytes, fewer than the 8 of its header length");
    std::uint64_t header_bytes = 0;
    in_.read(reinterpret_cast<char*>(&header_bytes), 8);
    PLAIT_CHECK(header_bytes <= max_header_bytes && header_bytes <= file_bytes - 8, "safetensors file '", path,
                "' is truncated or not a safetensors file: its header length ", header_bytes,
                " reaches beyond the file of ", file_bytes, " bytes");
    std::string header(static_cast<std::size_t>(header_bytes), '\0');
    in_.read(header.data(), static_cast<std::streamsize>(header_bytes));
    PLAIT_CHECK(in_.good(), "cannot read the header of the safetensors file '", path, "'");
    data_start_ = 8 + static_cast<std::int64_t>(header_bytes);
    data_bytes_ = static_cast<std::int64_t>(file_bytes) - data_start_;
    parse(header);
  }

  const std::string& path() const { return path_; }
  // The tensors in the order of their bytes in the file.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsTensor& tensor(const std::string& name) const {
    const auto it = index_.find(name);
    PLAIT_CHECK(it != index_.end(), "safetensors file '", path_, "' has no tensor named '", name, "'");
    return tensors_[it->second];
  }

  // Elements [first, first + count) of tensor `name` (row-major), converted to T (double, float): rows r0..r1 of a
  // (rows, cols) matrix are first = r0 cols, count = (r1 - r0) cols. Reads those bytes alone.
  template <class T>
  void read(const std::string& name, std::int64_t first, std::int64_t count, T* out) {
    const SafetensorsTensor& t = tensor(name);
    PLAIT_CHECK(safetensors_is_float(t.dtype), "tensor '", name, "' of '", path_, "' holds ",
                safetensors_dtype_name(t.dtype), " values; plait reads F64, F32, BF16 and F16");
    PLAIT_CHECK(first >= 0 && count >= 0 && first + count <= t.elements(), "elements [", first, ", ", first + count,
                ") are outside tensor '", name, "' of ", t.elements(), " elements");
    const int size = safetensors_dtype_bytes(t.dtype);
    raw_.resize(static_cast<std::size_t>(count * size));
    in_.seekg(data_start_ + t.begin + first * size);
    in_.read(raw_.data(), static_cast<std::streamsize>(raw_.size()));
    PLAIT_CHECK(in_.good(), "cannot read tensor '", name, "' of the safetensors file '", path_, "'");
    const char* p = raw_.data();
    for (std::int64_t i = 0; i < count; ++i, p += size) {
      double x = 0.0;
      switch (t.dtype) {
        case SafetensorsDtype::F64: std::memcpy(&x, p, 8); break;
        case SafetensorsDtype::F32: {
          float f;
          std::memcpy(&f, p, 4);
          x = f;
          break;
        }
        case SafetensorsDtype::BF16: {
          std::uint16_t bits;
          std::memcpy(&bits, p, 2);
          x = static_cast<float>(core::bf16::from_bits(bits));
          break;
        }
        default: {  // F16
          std::uint16_t bits;
          std::memcpy(&bits, p, 2);
          x = detail::half_to_double(bits);
        }
      }
      out[i] = static_cast<T>(x);
    }
  }

 private:
  template <class... Parts>
  [[noreturn]] void refuse(const Parts&... parts) const {
    core::fail("safetensors file '", path_, "' is malformed: ", parts...);
  }

  void parse(const std::string& header) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(header);
    } catch (const nlohmann::json::exception& e) {
      refuse("its header is not valid JSON (", e.what(), ")");
    }
    if (!j.is_object()) refuse("its header is not a JSON object of tensors");
    for (const auto& [name, entry] : j.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) refuse("its __metadata__ is not a map of strings");
        for (const auto& [key, value] : entry.items()) {
          if (!value.is_string()) refuse("its __metadata__ entry '", key, "' is not a string");
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_tensor(name, entry));
    }
    // The tensors must tile the byte buffer: sorted by offset, each starting where the previous ended, the last
    // ending where the file does (the format allows no holes, so no bytes hide between tensors).
    std::sort(tensors_.begin(), tensors_.end(),
              [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
    std::int64_t at = 0;
    const SafetensorsTensor* previous = nullptr;
    for (const SafetensorsTensor& t : tensors_) {
      if (t.end > data_bytes_)
        refuse("tensor '", t.name, "' lies at bytes [", t.begin, ", ", t.end, ") of a data buffer of ", data_bytes_,
               " bytes: out of bounds (a truncated file?)");
      if (t.begin < at)
        refuse("tensors '", previous->name, "' and '", t.name, "' overlap (bytes [", previous->begin, ", ",
               previous->end, ") and [", t.begin, ", ", t.end, "))");
      if (t.begin > at) refuse("bytes [", at, ", ", t.begin, ") of the data buffer belong to no tensor (a hole)");
      at = t.end;
      previous = &t;
    }
    if (at != data_bytes_)
      refuse("its last tensor ends at byte ", at, " of a data buffer of ", data_bytes_, " bytes (trailing bytes)");
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  }

  SafetensorsTensor parse_tensor(const std::string& name, const nlohmann::json& entry) const {
    if (!entry.is_object()) refuse("entry '", name, "' is not an object with dtype, shape and data_offsets");
    SafetensorsTensor t;
    t.name = name;
    const auto dtype = entry.find("dtype");
    if (dtype == entry.end() || !dtype->is_string()) refuse("tensor '", name, "' has no dtype");
    bool known = false;
    for (const auto& d : detail::safetensors_dtypes)
      if (dtype->get<std::string>() == d.name) t.dtype = d.dtype, known = true;
    if (!known) refuse("tensor '", name, "' has the unknown dtype '", dtype->get<std::string>(), "'");
    const auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array()) refuse("tensor '", name, "' has no shape");
    // Bytes = dtype size x product(shape), checked against overflow: a hostile shape must not wrap around.
    std::uint64_t bytes = static_cast<std::uint64_t>(safetensors_dtype_bytes(t.dtype));
    for (const auto& s : *shape) {
      if (!s.is_number_unsigned()) refuse("tensor '", name, "' has a shape entry that is not a whole number: ", s.dump());
      const auto extent = s.get<std::uint64_t>();
      if (extent != 0 && bytes > (std::uint64_t(1) << 62) / extent) refuse("tensor '", name, "' has an absurd shape ", shape->dump());
      bytes *= extent;
      t.shape.push_back(static_cast<std::int64_t>(extent));
    }
    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned())
      refuse("tensor '", name, "' has no data_offsets [begin, end]");
    const auto begin = (*offsets)[0].get<std::uint64_t>(), end = (*offsets)[1].get<std::uint64_t>();
    if (end < begin || end > (std::uint64_t(1) << 62)) refuse("tensor '", name, "' has data_offsets [", begin, ", ", end, ") that end before they begin");
    t.begin = static_cast<std::int64_t>(begin);
    t.end = static_cast<std::int64_t>(end);
    if (end - begin != bytes)
      refuse("tensor '", name, "' of ", safetensors_dtype_name(t.dtype), " ", shape->dump(), " needs ", bytes,
             " bytes, its data_offsets give ", end - begin);
    return t;
  }

  std::string path_;
  std::ifstream in_;
  std::int64_t data_start_ = 0, data_bytes_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::vector<char> raw_;
};

// Writes a safetensors file: the constructor writes the header for the tensors declared (in that order in the byte
// buffer), then append() takes their values in the same order, as many calls per tensor as the caller likes;
// finish() checks that every byte came and flushes. Memory: the caller's values and one conversion buffer.
class SafetensorsWriter {
 public:
  struct Declared {
    std::string name;
    SafetensorsDtype dtype = SafetensorsDtype::F32;
    std::vector<std::int64_t> shape;
  };

  SafetensorsWriter(const std::string& path, const std::vector<Declared>& tensors,
                    const std::map<std::string, std::string>& metadata = {})
      : path_(path), out_(path, std::ios::binary | std::ios::trunc) {
    PLAIT_CHECK(out_.good(), "cannot write the safetensors file '", path, "' (directory missing or not writable?)");
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::int64_t at = 0;
    for (const Declared& d : tensors) {
      PLAIT_CHECK(safetensors_is_float(d.dtype) && d.dtype != SafetensorsDtype::F16, "tensor '", d.name, "': plait writes F64, F32 and BF16, not ",
                  safetensors_dtype_name(d.dtype));
      PLAIT_CHECK(d.name != "__metadata__" && !header.contains(d.name), "tensor name '", d.name, "' is reserved or declared twice");
      SafetensorsTensor t{d.name, d.dtype, d.shape, at, 0};
      for (std::int64_t s : d.shape) PLAIT_CHECK(s >= 0, "tensor '", d.name, "' has a negative extent");
      t.end = at + t.elements() * safetensors_dtype_bytes(d.dtype);
      header[d.name] = {{"dtype", safetensors_dtype_name(d.dtype)}, {"shape", d.shape}, {"data_offsets", {t.begin, t.end}}};
      at = t.end;
      tensors_.push_back(std::move(t));
    }
    std::string text = header.dump();
    text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // the data starts 8-byte aligned
    const std::uint64_t length = text.size();
    out_.write(reinterpret_cast<const char*>(&length), 8);
    out_.write(text.data(), static_cast<std::streamsize>(text.size()));
  }

  // The next `count` values of the tensors, in declaration order, converted to each tensor's dtype.
  template <class T>
  void append(const T* values, std::int64_t count) {
    while (count > 0) {
      PLAIT_CHECK(current_ < tensors_.size(), "safetensors file '", path_, "': more values than the tensors declared");
      const SafetensorsTensor& t = tensors_[current_];
      const std::int64_t n = std::min(count, t.elements() - written_);
      const int size = safetensors_dtype_bytes(t.dtype);
      buffer_.resize(static_cast<std::size_t>(n * size));
      char* p = buffer_.data();
      for (std::int64_t i = 0; i < n; ++i, p += size) {
        if (t.dtype == SafetensorsDtype::F64) {
          const double x = static_cast<double>(values[i]);
          std::memcpy(p, &x, 8);
        } else if (t.dtype == SafetensorsDtype::F32) {
          const float x = static_cast<float>(values[i]);
          std::memcpy(p, &x, 4);
        } else {  // BF16, rounded to nearest even from fp32
          const std::uint16_t bits = core::bf16(static_cast<float>(values[i])).bits;
          std::memcpy(p, &bits, 2);
        }
      }
      out_.write(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
      values += n, count -= n, written_ += n;
      if (written_ == t.elements()) ++current_, written_ = 0;
    }
  }

  void finish() {
    while (current_ < tensors_.size() && tensors_[current_].elements() == 0) ++current_;  // empty tensors: no bytes
    PLAIT_CHECK(current_ == tensors_.size(), "safetensors file '", path_, "': tensor '",
                current_ < tensors_.size() ? tensors_[current_].name : "", "' was not written to its end");
    out_.flush();
    PLAIT_CHECK(out_.good(), "cannot write the safetensors file '", path_, "' (disk full?)");
  }

 private:
  std::string path_;
  std::ofstream out_;
  std::vector<SafetensorsTensor> tensors_;
  std::size_t current_ = 0;
  std::int64_t written_ = 0;
  std::vector<char> buffer_;
};

}  // namespace plait::train
