// Memory: buffers whose bytes are counted by kind (parameters, gradients, optimizer state, activations, workspace)
// in a tracker per device, with current and peak figures. The trainer's memory report and the planner's
// calibration read these counts; nothing is estimated here.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plait/core/error.hpp"

namespace plait::core {

enum class MemoryKind : int { parameters, gradients, optimizer, activations, workspace, count };

constexpr std::string_view name(MemoryKind kind) {
  constexpr std::array<std::string_view, 5> names{"parameters", "gradients", "optimizer", "activations", "workspace"};
  return names[static_cast<int>(kind)];
}

// Counts bytes per kind and in total; peaks are high-water marks since construction or the last reset_peaks().
class MemoryTracker {
 public:
  static constexpr int kinds = static_cast<int>(MemoryKind::count);

  void on_allocate(MemoryKind kind, std::size_t bytes) {
    bump(current_[index(kind)], peak_[index(kind)], static_cast<std::int64_t>(bytes));
    bump(total_current_, total_peak_, static_cast<std::int64_t>(bytes));
  }
  void on_free(MemoryKind kind, std::size_t bytes) {
    current_[index(kind)].fetch_sub(static_cast<std::int64_t>(bytes));
    total_current_.fetch_sub(static_cast<std::int64_t>(bytes));
  }

  std::int64_t current(MemoryKind kind) const { return current_[index(kind)].load(); }
  std::int64_t peak(MemoryKind kind) const { return peak_[index(kind)].load(); }
  std::int64_t current() const { return total_current_.load(); }
  std::int64_t peak() const { return total_peak_.load(); }

  // Starts new high-water marks at today's levels (e.g. to measure the activation peak of one step).
  void reset_peaks() {
    for (int k = 0; k < kinds; ++k) peak_[k].store(current_[k].load());
    total_peak_.store(total_current_.load());
  }

 private:
  static int index(MemoryKind kind) { return static_cast<int>(kind); }
  static void bump(std::atomic<std::int64_t>& current, std::atomic<std::int64_t>& peak, std::int64_t bytes) {
    const std::int64_t now = current.fetch_add(bytes) + bytes;
    std::int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }

  std::array<std::atomic<std::int64_t>, kinds> current_{};
  std::array<std::atomic<std::int64_t>, kinds> peak_{};
  std::atomic<std::int64_t> total_current_{0};
  std::atomic<std::int64_t> total_peak_{0};
};

// The host's tracker. (Each rank is its own process, so "per device" on the host is per rank.)
inline MemoryTracker& host_memory() {
  static MemoryTracker tracker;
  return tracker;
}

// Freed activation and workspace blocks, kept by size for the next buffer of that size. A training step allocates
// the same buffers at every step; memory fresh from the system costs a page fault and the kernel's zeroing of every
// page at first touch (about 5% of a small model's CPU step, measured by bench/train_step.cpp's profile). Holds at
// most as many bytes as were ever live at once in these kinds, so the process keeps no more than its own peak.
// Parameters, gradients and optimizer state are allocated once and go straight back to the system. Under
// AddressSanitizer nothing is kept, so that a use after free is still caught.
class HostBlockCache {
 public:
  static HostBlockCache& instance() {
    static HostBlockCache* cache = new HostBlockCache;  // never destroyed: buffers may outlive static destructors
    return *cache;
  }
  static constexpr bool caches(MemoryKind kind) {
#if defined(__SANITIZE_ADDRESS__)
    (void)kind;
    return false;
#else
    return kind == MemoryKind::activations || kind == MemoryKind::workspace;
#endif
  }

  // A cached block of exactly `bytes`, or nullptr.
  void* take(std::size_t bytes) {
    const std::lock_guard<std::mutex> lock(mutex_);
    live_ += bytes;
    most_live_ = std::max(most_live_, live_);
    const auto at = free_.find(bytes);
    if (at == free_.end() || at->second.empty()) return nullptr;
    void* block = at->second.back();
    at->second.pop_back();
    cached_ -= bytes;
    return block;
  }
  // Keeps `block` if the cache has room, else frees it.
  void give(void* block, std::size_t bytes) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      live_ -= bytes;
      if (cached_ + bytes <= most_live_) {
        free_[bytes].push_back(block);
        cached_ += bytes;
        return;
      }
    }
    std::free(block);
  }
  // Bytes kept for reuse now.
  std::size_t cached_bytes() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0, live_ = 0, most_live_ = 0;
};

// An owning, 64-byte aligned, zero-initialised host array of T whose bytes are counted under a MemoryKind.
template <class T>
class HostBuffer {
 public:
  static constexpr std::size_t alignment = 64;

  HostBuffer() = default;
  HostBuffer(std::size_t count, MemoryKind kind) : count_(count), kind_(kind) {
    if (count_ == 0) return;
    const std::size_t bytes = rounded_bytes();
    if (HostBlockCache::caches(kind_)) data_ = static_cast<T*>(HostBlockCache::instance().take(bytes));
    if (data_ == nullptr) data_ = static_cast<T*>(std::aligned_alloc(alignment, bytes));
    if (data_ == nullptr) fail("out of host memory: could not allocate ", bytes, " bytes for ", name(kind_));
    for (std::size_t i = 0; i < count_; ++i) new (data_ + i) T{};
    host_memory().on_allocate(kind_, count_ * sizeof(T));
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  HostBuffer(HostBuffer&& other) noexcept { swap(other); }
  HostBuffer& operator=(HostBuffer&& other) noexcept {
    HostBuffer moved(std::move(other));
    swap(moved);
    return *this;
  }
  ~HostBuffer() {
    if (data_ == nullptr) return;
    host_memory().on_free(kind_, count_ * sizeof(T));
    if (HostBlockCache::caches(kind_))
      HostBlockCache::instance().give(data_, rounded_bytes());
    else
      std::free(data_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return count_; }
  MemoryKind kind() const { return kind_; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + count_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + count_; }

 private:
  std::size_t rounded_bytes() const { return (count_ * sizeof(T) + alignment - 1) / alignment * alignment; }
  void swap(HostBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    std::swap(kind_, other.kind_);
  }

  T* data_ = nullptr;
  std::size_t count_ = 0;
  MemoryKind kind_ = MemoryKind::workspace;
};

}  // namespace plait::core

namespace plait {
using core::HostBuffer;
using core::MemoryKind;
using core::MemoryTracker;
}  // namespace plait
