// Memory: the tracker's current and peak bytes per kind and in total, reset_peaks, and host buffers that count
// their bytes, free them on destruction and hand them over on move.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "plait/core/memory.hpp"

using plait::HostBuffer;
using plait::MemoryKind;
using plait::MemoryTracker;

TEST_CASE("The tracker counts current and peak bytes per kind and in total", "[core][memory]") {
  MemoryTracker t;
  t.on_allocate(MemoryKind::parameters, 100);
  t.on_allocate(MemoryKind::activations, 50);
  t.on_allocate(MemoryKind::activations, 30);
  CHECK(t.current(MemoryKind::parameters) == 100);
  CHECK(t.current(MemoryKind::activations) == 80);
  CHECK(t.current(MemoryKind::gradients) == 0);
  CHECK(t.current() == 180);
  CHECK(t.peak() == 180);

  t.on_free(MemoryKind::activations, 50);
  t.on_allocate(MemoryKind::workspace, 20);
  CHECK(t.current(MemoryKind::activations) == 30);
  CHECK(t.peak(MemoryKind::activations) == 80);  // the high-water mark stays
  CHECK(t.peak(MemoryKind::parameters) == 100);
  CHECK(t.peak(MemoryKind::workspace) == 20);
  CHECK(t.current() == 150);
  CHECK(t.peak() == 180);  // the total peak is of the sum, not the sum of the kinds' peaks

  t.on_allocate(MemoryKind::optimizer, 60);
  CHECK(t.current() == 210);
  CHECK(t.peak() == 210);
}

TEST_CASE("reset_peaks starts new high-water marks at today's levels", "[core][memory]") {
  MemoryTracker t;
  t.on_allocate(MemoryKind::parameters, 64);
  t.on_allocate(MemoryKind::activations, 1000);
  t.on_free(MemoryKind::activations, 1000);
  CHECK(t.peak(MemoryKind::activations) == 1000);
  CHECK(t.peak() == 1064);

  t.reset_peaks();
  CHECK(t.peak(MemoryKind::activations) == 0);
  CHECK(t.peak(MemoryKind::parameters) == 64);
  CHECK(t.peak() == 64);

  // One step's activation peak, measured on its own.
  t.on_allocate(MemoryKind::activations, 300);
  t.on_allocate(MemoryKind::activations, 200);
  t.on_free(MemoryKind::activations, 500);
  CHECK(t.peak(MemoryKind::activations) == 500);
  CHECK(t.peak() == 564);
}

TEST_CASE("The tracker counts exactly when many threads allocate at once", "[core][memory]") {
  MemoryTracker t;
  constexpr int n = 10000;
#pragma omp parallel for
  for (int i = 0; i < n; ++i) {
    t.on_allocate(MemoryKind::workspace, 8);
    if (i % 2 == 0) t.on_free(MemoryKind::workspace, 8);
  }
  CHECK(t.current(MemoryKind::workspace) == 8 * n / 2);
  CHECK(t.peak(MemoryKind::workspace) >= 8 * n / 2);
  CHECK(t.peak(MemoryKind::workspace) <= 8 * n);
}

TEST_CASE("Every kind has a name", "[core][memory]") {
  CHECK(plait::core::name(MemoryKind::parameters) == "parameters");
  CHECK(plait::core::name(MemoryKind::gradients) == "gradients");
  CHECK(plait::core::name(MemoryKind::optimizer) == "optimizer");
  CHECK(plait::core::name(MemoryKind::activations) == "activations");
  CHECK(plait::core::name(MemoryKind::workspace) == "workspace");
}

// The host tracker is shared by the whole process, so these tests look at differences.
TEST_CASE("A host buffer is zeroed and aligned and counted and freed on destruction", "[core][memory]") {
  auto& mem = plait::core::host_memory();
  const std::int64_t before = mem.current(MemoryKind::gradients);
  const std::int64_t total_before = mem.current();
  {
    HostBuffer<double> b(1000, MemoryKind::gradients);
    CHECK(b.size() == 1000);
    CHECK(b.kind() == MemoryKind::gradients);
    CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % HostBuffer<double>::alignment == 0);
    for (double x : b) CHECK(x == 0.0);
    b[999] = 3.5;
    CHECK(*(b.end() - 1) == 3.5);
    CHECK(mem.current(MemoryKind::gradients) == before + 8000);
    CHECK(mem.current() == total_before + 8000);
    CHECK(mem.peak(MemoryKind::gradients) >= before + 8000);
  }
  CHECK(mem.current(MemoryKind::gradients) == before);
  CHECK(mem.current() == total_before);
}

TEST_CASE("An empty host buffer holds and counts nothing", "[core][memory]") {
  auto& mem = plait::core::host_memory();
  const std::int64_t before = mem.current();
  HostBuffer<float> empty;
  HostBuffer<float> zero(0, MemoryKind::activations);
  CHECK(empty.data() == nullptr);
  CHECK(zero.data() == nullptr);
  CHECK(zero.size() == 0);
  CHECK(zero.begin() == zero.end());
  CHECK(mem.current() == before);
}

TEST_CASE("Moving a host buffer hands over its bytes without counting them twice", "[core][memory]") {
  auto& mem = plait::core::host_memory();
  const std::int64_t before = mem.current(MemoryKind::activations);
  {
    HostBuffer<float> a(256, MemoryKind::activations);
    float* const pointer = a.data();
    a[7] = 1.25f;

    HostBuffer<float> b(std::move(a));  // move construction
    CHECK(b.data() == pointer);
    CHECK(b.size() == 256);
    CHECK(b[7] == 1.25f);
    CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): a moved-from buffer is empty
    CHECK(a.size() == 0);
    CHECK(mem.current(MemoryKind::activations) == before + 1024);

    HostBuffer<float> c(64, MemoryKind::activations);
    CHECK(mem.current(MemoryKind::activations) == before + 1024 + 256);
    c = std::move(b);  // move assignment frees what c held
    CHECK(c.data() == pointer);
    CHECK(c[7] == 1.25f);
    CHECK(b.data() == nullptr);  // NOLINT(bugprone-use-after-move)
    CHECK(mem.current(MemoryKind::activations) == before + 1024);
  }
  CHECK(mem.current(MemoryKind::activations) == before);
}

TEST_CASE("Moving a buffer of one kind into a buffer of another keeps each kind's count right", "[core][memory]") {
  auto& mem = plait::core::host_memory();
  const std::int64_t params = mem.current(MemoryKind::parameters), work = mem.current(MemoryKind::workspace);
  {
    HostBuffer<float> w(10, MemoryKind::workspace);
    HostBuffer<float> p(20, MemoryKind::parameters);
    w = std::move(p);  // the workspace bytes are freed; the parameter bytes now live in w
    CHECK(w.kind() == MemoryKind::parameters);
    CHECK(mem.current(MemoryKind::workspace) == work);
    CHECK(mem.current(MemoryKind::parameters) == params + 80);
  }
  CHECK(mem.current(MemoryKind::parameters) == params);
  CHECK(mem.current(MemoryKind::workspace) == work);
}

TEST_CASE("A freed activation block serves the next activation buffer of its size and is zeroed again", "[core][memory]") {
  using plait::core::HostBlockCache;
  if (!HostBlockCache::caches(MemoryKind::activations)) {
    WARN("AddressSanitizer build: freed blocks go back to the system, so that a use after free is caught");
    return;
  }
  auto& mem = plait::core::host_memory();
  const std::int64_t before = mem.current(MemoryKind::activations);
  const void* first = nullptr;
  {
    // The cache keeps a freed block while it holds no more than the most bytes ever live at once; the test cases
    // before this one (in the same process) may have filled it to that, so a larger block, alive with `a`, makes
    // room. Its size is not a's, and it is freed after `a`.
    const std::size_t room = (plait::core::HostBlockCache::instance().cached_bytes() + 2 * 12345 * 4) / 4;
    HostBuffer<float> larger(room, MemoryKind::activations);
    HostBuffer<float> a(12345, MemoryKind::activations);
    first = a.data();
    for (float& x : a) x = 2.5f;
    a = HostBuffer<float>();
  }
  CHECK(mem.current(MemoryKind::activations) == before);  // a kept block is not counted as live
  HostBuffer<float> b(12345, MemoryKind::activations);
  CHECK(static_cast<const void*>(b.data()) == first);
  bool all_zero = true;
  for (float x : b) all_zero = all_zero && x == 0.0f;
  CHECK(all_zero);
  CHECK(mem.current(MemoryKind::activations) == before + 12345 * 4);
}

TEST_CASE("Blocks of parameters and gradients go straight back to the system", "[core][memory]") {
  using plait::core::HostBlockCache;
  const std::size_t cached = HostBlockCache::instance().cached_bytes();
  { HostBuffer<float> p(4321, MemoryKind::parameters); }
  { HostBuffer<float> g(4321, MemoryKind::gradients); }
  CHECK(HostBlockCache::instance().cached_bytes() == cached);
  CHECK_FALSE(HostBlockCache::caches(MemoryKind::parameters));
  CHECK_FALSE(HostBlockCache::caches(MemoryKind::gradients));
  CHECK_FALSE(HostBlockCache::caches(MemoryKind::optimizer));
}
