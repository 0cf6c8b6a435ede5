// Every reader of outside data (fuzz/readers.hpp: checkpoints, token shards, safetensors, hardware JSON, runs CSV,
// plait-train's command line and --config file) given a few hundred mutated copies of valid files, the same each
// run (a seeded generator): each is read or refused with a plait::Error; never another exception, a crash (the
// host-asan build runs this too), a hang, or an allocation out of proportion to the file. Then the inputs that
// broke a reader once (tests/fuzz/corpus/<target>/, one file each, named after the finding).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "readers.hpp"

// The largest single allocation since it was reset: a reader that believes a size in a header before checking it
// against the file asks for it here. Not under AddressSanitizer, which owns operator new (a replacement there frees
// what ASan's allocated); the optimized build checks it.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool allocations_tracked = false;
#else
constexpr bool allocations_tracked = true;
#endif
namespace {
std::atomic<std::size_t> largest_allocation{0};
}
#if !defined(__SANITIZE_ADDRESS__)
void* operator new(std::size_t n) {
  std::size_t seen = largest_allocation.load(std::memory_order_relaxed);
  while (n > seen && !largest_allocation.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace {

using plait::fuzz::Bytes;

// Mutations of the kinds that break readers: bit flips, bytes set to ones that mean something (quotes, separators,
// 0xFF), truncation, extension, splicing with another valid file, and big or negative numbers written over binary
// sizes and over the numbers of a text file.
class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}

  Bytes operator()(const Bytes& original, const std::vector<Bytes>& others) {
    Bytes b = original;
    for (std::uint64_t edits = 1 + below(3); edits > 0; --edits) {
      switch (below(7)) {
        case 0:
          if (!b.empty()) b[below(b.size())] ^= static_cast<char>(1 << below(8));
          break;
        case 1: {
          static const char bytes[] = {0, '\xff', '\x7f', '\x80', '"', ',', '\n', '-', '9', '{', '[', '=', '\\'};
          if (!b.empty()) b[below(b.size())] = bytes[below(sizeof bytes)];
          break;
        }
        case 2: b.resize(below(b.size() + 1)); break;
        case 3: {
          const std::uint64_t n = 1 + below(64);
          for (std::uint64_t i = 0; i < n; ++i) b.push_back(static_cast<char>(below(256)));
          break;
        }
        case 4: {
          const Bytes& other = others[below(others.size())];
          b = b.substr(0, below(b.size() + 1)) + other.substr(below(other.size() + 1));
          break;
        }
        case 5: {
          static const std::int64_t numbers[] = {0, 1, -1, 0x7fffffff, -0x7fffffffLL - 1, 0xffffffffLL,
                                                 0x7fffffffffffffffLL, -0x7fffffffffffffffLL - 1,
                                                 std::int64_t{1} << 62, std::int64_t{1} << 40, 20240520};
          const std::int64_t x = numbers[below(std::size(numbers))];
          const std::size_t width = below(2) ? 8 : 4;
          if (b.size() >= width) std::memcpy(b.data() + below(b.size() - width + 1) / 4 * 4, &x, width);
          break;
        }
        default: {  // a number of a text file replaced
          static const char* numbers[] = {"0", "-1", "-9223372036854775808", "18446744073709551615",
                                          "99999999999999999999999", "1e308", "-1e308", "nan", "4294967296", "1.5",
                                          "2147483648", "\"x\"", "null", "[]", "{}", "true"};
          const std::size_t from = b.find_first_of("0123456789", below(b.size() + 1));
          if (from == Bytes::npos) break;
          const std::size_t to = b.find_first_not_of("0123456789.e", from);
          b.replace(from, (to == Bytes::npos ? b.size() : to) - from, numbers[below(std::size(numbers))]);
        }
      }
    }
    return b;
  }

 private:
  std::uint64_t below(std::uint64_t n) { return n ? rng_() % n : 0; }
  std::mt19937_64 rng_;
};

struct ScratchDir {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("plait-mutation-" + std::to_string(std::random_device{}()))).string();
  ScratchDir() { std::filesystem::create_directories(path); }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Aborts the test program, naming the input, if one read takes longer than `limit`: a hang fails here in seconds
// instead of at CTest's timeout.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds limit) : limit_(limit), thread_([this] { watch(); }) {}
  ~Watchdog() {
    done_ = true;
    thread_.join();
  }
  void start(const std::string& what) {
    what_ = what;
    started_ = now();
  }
  void stop() { started_ = 0; }

 private:
  static std::int64_t now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void watch() {
    while (!done_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const std::int64_t started = started_;
      if (started != 0 && now() - started > std::chrono::milliseconds(limit_).count()) {
        std::fprintf(stderr, "plait: reading %s took over %lld s: a hang\n", what_.c_str(),
                     static_cast<long long>(limit_.count()));
        std::abort();
      }
    }
  }
  std::chrono::seconds limit_;
  std::atomic<bool> done_{false};
  std::atomic<std::int64_t> started_{0};
  std::string what_;
  std::thread thread_;
};

// Reads one input; returns whether it was read (false: refused with a plait::Error). Any other exception fails the
// test, naming the input; so does an allocation larger than twice the input plus 8 MiB (the readers' fixed
// buffers: a checkpoint's 4 MiB staging buffer; tokens as int32 take twice a uint16 shard's bytes).
bool read_or_refuse(const std::string& target, const Bytes& input, const std::string& what, const std::string& dir,
                    Watchdog& watchdog) {
  largest_allocation = 0;
  bool read = false;
  watchdog.start(what);
  try {
    plait::fuzz::read_input(target, input, dir);
    read = true;
  } catch (const plait::Error&) {
  } catch (const std::exception& e) {
    watchdog.stop();
    FAIL(what << " threw " << e.what() << " instead of a plait::Error");
  }
  watchdog.stop();
  const std::size_t bound = 2 * input.size() + (std::size_t(8) << 20);
  INFO(what << ": the largest allocation was " << largest_allocation << " bytes for an input of " << input.size());
  if (allocations_tracked) CHECK(largest_allocation <= bound);
  return read;
}

}  // namespace

TEST_CASE("readers: mutated copies of valid files are read or refused with a plait::Error", "[fuzz]") {
  ScratchDir scratch;
  Watchdog watchdog(std::chrono::seconds(20));
  constexpr int mutations = 300;  // per target
  std::uint64_t seed = 20;
  for (const auto& [target, seeds] : plait::fuzz::seed_inputs(scratch.path)) {
    for (std::size_t s = 0; s < seeds.size(); ++s)  // the originals are read
      CHECK(read_or_refuse(target, seeds[s], target + " seed " + std::to_string(s), scratch.path, watchdog));
    Mutator mutate(++seed);
    int read = 0;
    for (int i = 0; i < mutations; ++i) {
      const Bytes input = mutate(seeds[static_cast<std::size_t>(i) % seeds.size()], seeds);
      read += read_or_refuse(target, input, target + " mutation " + std::to_string(i), scratch.path, watchdog);
    }
    // Both outcomes occur: the mutations neither all miss the readers' checks nor all break the file.
    INFO(target << ": " << read << " of " << mutations << " mutated inputs read, the others refused");
    CHECK(read > 0);
    CHECK(read < mutations);
  }
}

// Each once crashed its reader or went past its checks (an overflow, a read out of bounds, a float cast out of range,
// another exception): now read or refused with a plait::Error. A runs CSV's bad row is read as "unsupported".
TEST_CASE("readers: the inputs that broke them are read or refused with a plait::Error", "[fuzz]") {
  ScratchDir scratch;
  Watchdog watchdog(std::chrono::seconds(20));
  int replayed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PLAIT_FUZZ_CORPUS)) {
    const std::string target = entry.path().filename().string();
    for (const auto& file : std::filesystem::directory_iterator(entry.path())) {
      std::ifstream in(file.path(), std::ios::binary);
      const Bytes input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      (void)read_or_refuse(target, input, file.path().string(), scratch.path, watchdog);
      ++replayed;
    }
  }
  CHECK(replayed > 0);
}
