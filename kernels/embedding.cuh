// Token embedding on the GPU (reference: embedding.hpp): gather rows of a vocab slice of the table (tokens outside
// the slice give zero rows), and add the gradient back. Backward is deterministic, without atomics: the
// (table row, position) pairs are sorted by row (a stable radix sort, so positions stay in order within a row), and
// the run of positions of each row is summed in position order by one owner, the same order as the CPU reference's.
//
//   tokens   7 3 7 9 3 7          (slice [0, 8): 9 is another rank's)
//   sorted   3 3 7 7 7 8          keys: row in the slice, or vocab_rows (here 8) for any token outside it
//   position 1 4 0 2 5 3          runs: row 3 <- dout[1] + dout[4], row 7 <- dout[0] + dout[2] + dout[5]
//
// Pitfalls: a run belongs to the block whose segment of sorted positions holds its first position, and that block
// walks the whole run; a token repeated ten thousand times is summed by one block per column chunk (correct, but
// serial over its rows).
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include <cstddef>
#include <cstdint>
#include <limits>

#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

struct EmbeddingConfig {
  static constexpr int threads = 256;              // columns of dtable per backward block (and forward's block size)
  static constexpr int positions_per_block = 64;  // sorted positions whose runs one backward block owns
};

namespace detail {

template <class T>
__global__ void embedding_forward_kernel(const std::int32_t* tokens, std::int64_t n, const T* table,
                                         std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim, T* out) {
  for (std::int64_t at = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; at < n * dim;
       at += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i = at / dim, c = at % dim;
    const std::int64_t row = static_cast<std::int64_t>(tokens[i]) - vocab_begin;
    out[at] = (row >= 0 && row < vocab_rows) ? table[row * dim + c] : from_float<T>(0.0f);
  }
}

// Sort keys: the row in the slice, or vocab_rows (larger than any row, so these sort last) for a token outside it.
// (A template only so that the header defines no non-inline __global__ function: nvcc ignores `inline` on those.)
template <class Key>
__global__ void embedding_sort_keys_kernel(const std::int32_t* tokens, std::int64_t n, std::int64_t vocab_begin,
                                           std::int64_t vocab_rows, Key* keys, std::int32_t* positions) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t row = static_cast<std::int64_t>(tokens[i]) - vocab_begin;
    keys[i] = static_cast<Key>(row >= 0 && row < vocab_rows ? row : vocab_rows);
    positions[i] = static_cast<std::int32_t>(i);
  }
}

// Block (segment, chunk): for the runs of equal keys that start among sorted positions [segment * P, segment * P + P),
// dtable[row, chunk's columns] += the run's dout rows, added one by one in position order onto the old value (the
// reference's order, so in fp32 the result is the reference's to the bit). One thread per column; every thread of a
// block walks the same positions, so the key reads are broadcasts and the dout reads are coalesced along a row.
template <class T, class G>
__global__ void __launch_bounds__(EmbeddingConfig::threads)
    embedding_run_sum_kernel(const std::uint32_t* keys, const std::int32_t* positions, std::int64_t n, const T* dout,
                             std::int64_t vocab_rows, std::int64_t dim, G* dtable) {
  const std::int64_t c = blockIdx.y * std::int64_t(EmbeddingConfig::threads) + threadIdx.x;
  if (c >= dim) return;  // no barrier below: idle threads may leave
  const std::int64_t first = blockIdx.x * std::int64_t(EmbeddingConfig::positions_per_block);
  const std::int64_t last = first + EmbeddingConfig::positions_per_block < n
                                ? first + EmbeddingConfig::positions_per_block
                                : n;
  const std::uint32_t outside = static_cast<std::uint32_t>(vocab_rows);
  std::int64_t j = first;
  if (j > 0) {  // the rest of a run that started in an earlier segment is that segment's block's
    const std::uint32_t before = keys[j - 1];
    while (j < last && keys[j] == before) ++j;
  }
  while (j < last) {
    const std::uint32_t key = keys[j];
    if (key == outside) break;  // the largest key: every later position is outside the slice too
    G* target = dtable + static_cast<std::int64_t>(key) * dim + c;
    float sum = to_float(*target);
    for (; j < n && keys[j] == key; ++j) sum += to_float(dout[static_cast<std::int64_t>(positions[j]) * dim + c]);
    *target = from_float<G>(sum);
  }
}

constexpr std::size_t align256(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

// Bits of the sort keys: enough for vocab_rows itself (the key of tokens outside the slice).
inline int embedding_key_bits(std::int64_t vocab_rows) {
  int bits = 1;
  while (bits < 32 && (std::int64_t{1} << bits) <= vocab_rows) ++bits;
  return bits;
}

// The workspace, in this order: keys and positions before the sort and after it (n each, 256-byte aligned), then
// CUB's radix-sort storage.
struct EmbeddingSortWorkspace {
  std::size_t array_bytes = 0, sort_bytes = 0;
  std::size_t total() const { return 4 * array_bytes + sort_bytes; }
};

// CUB's size query (it needs a device: without one it returns the error).
inline cudaError_t embedding_sort_workspace(std::int64_t n, std::int64_t vocab_rows, EmbeddingSortWorkspace& w) {
  w.array_bytes = align256(sizeof(std::uint32_t) * static_cast<std::size_t>(n));
  return cub::DeviceRadixSort::SortPairs(nullptr, w.sort_bytes, static_cast<const std::uint32_t*>(nullptr),
                                         static_cast<std::uint32_t*>(nullptr),
                                         static_cast<const std::int32_t*>(nullptr),
                                         static_cast<std::int32_t*>(nullptr), static_cast<int>(n), 0,
                                         embedding_key_bits(vocab_rows));
}

inline bool embedding_sizes_supported(std::int64_t n, std::int64_t vocab_rows) {
  // Positions are int32 (CUB's item count is an int), keys uint32 with room for vocab_rows itself.
  return n < std::numeric_limits<std::int32_t>::max() && vocab_rows < std::numeric_limits<std::int32_t>::max();
}

}  // namespace detail

template <Storage T>
cudaError_t embedding_forward(const std::int32_t* tokens, std::int64_t n,  // (n)
                              const T* table,                              // (vocab_rows, dim)
                              std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim,
                              T* out,  // (n, dim)
                              cudaStream_t stream) {
  if (n * dim == 0) return cudaSuccess;
  detail::embedding_forward_kernel<<<elementwise_blocks(n * dim, EmbeddingConfig::threads), EmbeddingConfig::threads,
                                     0, stream>>>(tokens, n, table, vocab_begin, vocab_rows, dim, out);
  return cudaGetLastError();
}

// Device bytes of workspace that embedding_backward needs for n tokens and a slice of vocab_rows rows (0 when there is
// nothing to do). Queries CUB, so it needs a CUDA device.
inline cudaError_t embedding_backward_workspace_bytes(std::int64_t n, std::int64_t vocab_rows, std::size_t* bytes) {
  *bytes = 0;
  if (n <= 0 || vocab_rows <= 0) return cudaSuccess;
  if (!detail::embedding_sizes_supported(n, vocab_rows)) return cudaErrorInvalidValue;
  detail::EmbeddingSortWorkspace w;
  if (const cudaError_t e = detail::embedding_sort_workspace(n, vocab_rows, w); e != cudaSuccess) return e;
  *bytes = w.total();
  return cudaSuccess;
}

// dtable += the rows of dout gathered by token, in a fixed order (bitwise reproducible); dtable in T, or in fp32
// (G = float: the gradients of a bf16 model). workspace: embedding_backward_workspace_bytes(n, vocab_rows) bytes of
// device memory, 256-byte aligned (cudaErrorInvalidValue when fewer are given).
template <Storage T, Storage G = T>
cudaError_t embedding_backward(const std::int32_t* tokens, std::int64_t n,  // (n)
                               const T* dout,                               // (n, dim)
                               std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim,
                               G* dtable,  // (vocab_rows, dim), +=
                               void* workspace, std::size_t workspace_bytes, cudaStream_t stream) {
  if (n <= 0 || dim <= 0 || vocab_rows <= 0) return cudaSuccess;
  if (!detail::embedding_sizes_supported(n, vocab_rows)) return cudaErrorInvalidValue;
  detail::EmbeddingSortWorkspace w;
  if (const cudaError_t e = detail::embedding_sort_workspace(n, vocab_rows, w); e != cudaSuccess) return e;
  if (workspace == nullptr || workspace_bytes < w.total()) return cudaErrorInvalidValue;
  auto* base = static_cast<unsigned char*>(workspace);
  auto* keys_in = reinterpret_cast<std::uint32_t*>(base);                        // (n)
  auto* keys_out = reinterpret_cast<std::uint32_t*>(base + w.array_bytes);       // (n), sorted
  auto* positions_in = reinterpret_cast<std::int32_t*>(base + 2 * w.array_bytes);   // (n)
  auto* positions_out = reinterpret_cast<std::int32_t*>(base + 3 * w.array_bytes);  // (n), in key order
  void* sort_storage = base + 4 * w.array_bytes;

  detail::embedding_sort_keys_kernel<<<elementwise_blocks(n, EmbeddingConfig::threads), EmbeddingConfig::threads, 0,
                                       stream>>>(tokens, n, vocab_begin, vocab_rows, keys_in, positions_in);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  std::size_t sort_bytes = w.sort_bytes;
  if (const cudaError_t e =
          cub::DeviceRadixSort::SortPairs(sort_storage, sort_bytes, keys_in, keys_out, positions_in, positions_out,
                                          static_cast<int>(n), 0, detail::embedding_key_bits(vocab_rows), stream);
      e != cudaSuccess)
    return e;
  const dim3 grid(static_cast<unsigned>(ceil_div(n, EmbeddingConfig::positions_per_block)),
                  static_cast<unsigned>(ceil_div(dim, EmbeddingConfig::threads)));
  if (grid.y > 65535) return cudaErrorInvalidValue;  // dim beyond 16.7 million columns
  detail::embedding_run_sum_kernel<<<grid, EmbeddingConfig::threads, 0, stream>>>(keys_out, positions_out, n, dout,
                                                                                  vocab_rows, dim, dtable);
  return cudaGetLastError();
}

}  // namespace plait::kernels::device
