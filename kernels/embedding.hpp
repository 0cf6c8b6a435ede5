// Token embedding on the CPU: gather rows of a (vocab slice of a) table, and scatter-add the gradient back.
// Under vocab parallelism a rank holds rows [vocab_begin, vocab_begin + vocab_rows) only; a token outside that slice
// gives a zero row, so summing the ranks' outputs gives the full lookup.
#pragma once

#include <algorithm>
#include <cstdint>

namespace plait::kernels {

template <class T>
void embedding_forward(const std::int32_t* tokens, std::int64_t n,  // (n)
                       const T* table,                              // (vocab_rows, dim)
                       std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim,
                       T* out) {  // (n, dim)
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t row = static_cast<std::int64_t>(tokens[i]) - vocab_begin;
    T* out_row = out + i * dim;
    if (row >= 0 && row < vocab_rows)
      std::copy_n(table + row * dim, dim, out_row);
    else
      std::fill_n(out_row, dim, T(0));
  }
}

// dtable += scatter of dout by token. A repeated token adds into the same table row, so rows cannot be shared out
// among threads; columns can: each thread owns a block of columns and walks every token in order. That is race-free
// without atomics, and the order of the sum does not depend on the thread count (bitwise reproducible).
template <class T>
void embedding_backward(const std::int32_t* tokens, std::int64_t n,  // (n)
                        const T* dout,                               // (n, dim)
                        std::int64_t vocab_begin, std::int64_t vocab_rows, std::int64_t dim,
                        T* dtable) {  // (vocab_rows, dim), +=
  constexpr std::int64_t columns_per_block = 64;  // a few cache lines per row: enough blocks for every thread
  const std::int64_t blocks = (dim + columns_per_block - 1) / columns_per_block;
#pragma omp parallel for schedule(static)
  for (std::int64_t block = 0; block < blocks; ++block) {
    const std::int64_t c0 = block * columns_per_block;
    const std::int64_t c1 = std::min(dim, c0 + columns_per_block);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t row = static_cast<std::int64_t>(tokens[i]) - vocab_begin;
      if (row < 0 || row >= vocab_rows) continue;  // another rank's slice
      const T* g = dout + i * dim;
      T* d = dtable + row * dim;
      for (std::int64_t c = c0; c < c1; ++c) d[c] += g[c];
    }
  }
}

}  // namespace plait::kernels
