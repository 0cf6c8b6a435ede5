// Causal self-attention with grouped-query attention on the CPU: FlashAttention-2's algorithm, the reference for
// kernels/attention.cuh. A tile of queries meets the tiles of keys up to the diagonal with an online softmax, so no
// T x T matrix is ever formed; forward keeps the logsumexp of each row, from which backward recomputes the
// probabilities tile by tile. Tile products go to BLAS (single-threaded inside the OpenMP regions).
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "plait/kernels/blas.hpp"

namespace plait::kernels {

// Query head h reads kv head h / (heads / kv_heads); kv_heads == heads is ordinary multi-head attention.
struct AttentionShape {
  std::int64_t batch, seq, heads, kv_heads, head_dim;
  double scale;  // usually 1 / sqrt(head_dim)
};

// Rows of queries and of keys per tile. Measured on the 2-core development VM (OpenBLAS's OpenMP build, fp32, B=1
// T=2048 H=8 hd=64, 2 threads): every pair from {32, 64, 128} came within noise of the others, about 60-70 ms forward
// (~70 GFLOP/s) and 150-180 ms backward; 64 x 64 had the best minimum. Worth re-measuring on a machine with more
// cores and larger caches. (With OpenBLAS's pthread build, 128-row tiles ran 7x slower: its threads fight ours.)
struct AttentionTiles {
  static constexpr std::int64_t queries = 64;
  static constexpr std::int64_t keys = 64;
};

template <class T>
void attention_forward(const AttentionShape& s,
                       const T* q,  // (B, T, H, hd)
                       const T* k,  // (B, T, Hkv, hd)
                       const T* v,  // (B, T, Hkv, hd)
                       T* out,      // (B, T, H, hd)
                       T* lse) {    // (B, H, T)
  assert(s.heads % s.kv_heads == 0 && "query heads come in equal groups per kv head");
  constexpr std::int64_t tile_q = AttentionTiles::queries, tile_k = AttentionTiles::keys;
  const std::int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const std::int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;  // one token to the next
  const std::int64_t query_tiles = (s.seq + tile_q - 1) / tile_q;
  const T scale = static_cast<T>(s.scale);
#pragma omp parallel
  {
    std::vector<T> probs(tile_q * tile_k);  // (tile_q, tile_k): the scores, then exp(score - running max)
    std::vector<T> acc(tile_q * hd);        // (tile_q, hd): the output before division by the row sums
    std::vector<T> row_max(tile_q), row_sum(tile_q);
    // Later query tiles see more keys: dynamic scheduling evens out the causal triangle.
#pragma omp for collapse(3) schedule(dynamic)
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t h = 0; h < s.heads; ++h) {
        for (std::int64_t qt = 0; qt < query_tiles; ++qt) {
          const std::int64_t q0 = qt * tile_q, rows = std::min(tile_q, s.seq - q0);
          const std::int64_t kvh = h / group;
          const T* q_tile = q + ((b * s.seq + q0) * s.heads + h) * hd;  // (rows, hd), stride q_stride
          std::fill(row_max.begin(), row_max.end(), -std::numeric_limits<T>::infinity());
          std::fill(row_sum.begin(), row_sum.end(), T(0));
          std::fill(acc.begin(), acc.end(), T(0));

          const std::int64_t key_end = q0 + rows;  // causal: no query of this tile sees a key at or past this
          for (std::int64_t k0 = 0; k0 < key_end; k0 += tile_k) {
            const std::int64_t cols = std::min(tile_k, key_end - k0);
            const T* k_tile = k + ((b * s.seq + k0) * s.kv_heads + kvh) * hd;  // (cols, hd), stride kv_stride
            const T* v_tile = v + ((b * s.seq + k0) * s.kv_heads + kvh) * hd;  // (cols, hd), stride kv_stride
            gemm(Trans::no, Trans::yes, rows, cols, hd, scale, q_tile, q_stride, k_tile, kv_stride, T(0),
                 probs.data(), tile_k);  // S = scale Q K^T
            for (std::int64_t r = 0; r < rows; ++r) {
              T* p = probs.data() + r * tile_k;
              // Query q0 + r sees keys up to itself. The first key tile always holds key 0, so the running max is
              // finite from then on and a row with no visible key in a later tile just keeps it.
              const std::int64_t visible = std::clamp<std::int64_t>(q0 + r - k0 + 1, 0, cols);
              T new_max = row_max[r];
              for (std::int64_t c = 0; c < visible; ++c) new_max = std::max(new_max, p[c]);
              const T rescale = std::exp(row_max[r] - new_max);  // exp(-inf) = 0 on the first tile
              T sum = 0;
              for (std::int64_t c = 0; c < visible; ++c) {
                p[c] = std::exp(p[c] - new_max);
                sum += p[c];
              }
              std::fill(p + visible, p + cols, T(0));  // masked keys
              row_sum[r] = row_sum[r] * rescale + sum;
              row_max[r] = new_max;
              for (std::int64_t d = 0; d < hd; ++d) acc[r * hd + d] *= rescale;
            }
            gemm(Trans::no, Trans::no, rows, hd, cols, T(1), probs.data(), tile_k, v_tile, kv_stride, T(1),
                 acc.data(), hd);  // acc += P V
          }

          for (std::int64_t r = 0; r < rows; ++r) {
            T* o = out + ((b * s.seq + q0 + r) * s.heads + h) * hd;
            const T inv_sum = T(1) / row_sum[r];
            for (std::int64_t d = 0; d < hd; ++d) o[d] = acc[r * hd + d] * inv_sum;
            lse[(b * s.heads + h) * s.seq + q0 + r] = row_max[r] + std::log(row_sum[r]);
          }
        }
      }
    }
  }
}

namespace detail {

// One (query tile, key tile) pair of the backward pass, which both of its loops need:
//   P = exp(scale Q K^T - lse) under the causal mask      dS = P * (dO V^T - D)
// into p and ds, (rows, AttentionTiles::keys) each; masked entries are 0 in both.
template <class T>
void attention_tile_backward(const AttentionShape& s, const T* q_tile, const T* do_tile, const T* k_tile,
                             const T* v_tile, const T* lse_rows, const T* d_rows, std::int64_t q0, std::int64_t rows,
                             std::int64_t k0, std::int64_t cols, T* p, T* ds) {
  constexpr std::int64_t tile_k = AttentionTiles::keys;
  const std::int64_t q_stride = s.heads * s.head_dim, kv_stride = s.kv_heads * s.head_dim;
  gemm(Trans::no, Trans::yes, rows, cols, s.head_dim, static_cast<T>(s.scale), q_tile, q_stride, k_tile, kv_stride,
       T(0), p, tile_k);  // S = scale Q K^T
  gemm(Trans::no, Trans::yes, rows, cols, s.head_dim, T(1), do_tile, q_stride, v_tile, kv_stride, T(0), ds,
       tile_k);  // dP = dO V^T
  for (std::int64_t r = 0; r < rows; ++r) {
    T* pr = p + r * tile_k;
    T* dsr = ds + r * tile_k;
    const std::int64_t visible = std::clamp<std::int64_t>(q0 + r - k0 + 1, 0, cols);
    for (std::int64_t c = 0; c < visible; ++c) {
      pr[c] = std::exp(pr[c] - lse_rows[r]);
      dsr[c] = pr[c] * (dsr[c] - d_rows[r]);
    }
    std::fill(pr + visible, pr + cols, T(0));
    std::fill(dsr + visible, dsr + cols, T(0));
  }
}

}  // namespace detail

// Backward in two passes so that every gradient element has one owner and a fixed order of summation (no atomics,
// bitwise the same on any thread count):
//   1. over (batch, kv head, key tile): dV_j += P^T dO_i and dK_j += scale dS^T Q_i, over the group's query heads
//      and every query tile i at or below the diagonal;
//   2. over (batch, head, query tile):  dQ_i += scale dS K_j over key tiles j up to the diagonal.
// Pass 2 recomputes S and dP, seven tile products instead of FlashAttention-2's five, the price of determinism
// under GQA (several query heads add into one kv head) without atomics.
template <class T>
void attention_backward(const AttentionShape& s,
                        const T* q,     // (B, T, H, hd)
                        const T* k,     // (B, T, Hkv, hd)
                        const T* v,     // (B, T, Hkv, hd)
                        const T* out,   // (B, T, H, hd)
                        const T* lse,   // (B, H, T)
                        const T* dout,  // (B, T, H, hd)
                        T* dq,          // (B, T, H, hd), +=
                        T* dk,          // (B, T, Hkv, hd), +=
                        T* dv) {        // (B, T, Hkv, hd), +=
  assert(s.heads % s.kv_heads == 0 && "query heads come in equal groups per kv head");
  constexpr std::int64_t tile_q = AttentionTiles::queries, tile_k = AttentionTiles::keys;
  const std::int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const std::int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;
  const std::int64_t query_tiles = (s.seq + tile_q - 1) / tile_q;
  const std::int64_t key_tiles = (s.seq + tile_k - 1) / tile_k;
  const T scale = static_cast<T>(s.scale);

  // D_i = rowsum(dO_i * O_i): the softmax backward's correction term, once per query row.
  std::vector<T> rowdot(static_cast<std::size_t>(s.batch * s.heads * s.seq));  // (B, H, T)
#pragma omp parallel for collapse(3) schedule(static)
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t h = 0; h < s.heads; ++h) {
      for (std::int64_t t = 0; t < s.seq; ++t) {
        const std::int64_t at = ((b * s.seq + t) * s.heads + h) * hd;
        T sum = 0;
        for (std::int64_t d = 0; d < hd; ++d) sum += dout[at + d] * out[at + d];
        rowdot[(b * s.heads + h) * s.seq + t] = sum;
      }
    }
  }

  // Pass 1: dK and dV, one key tile of one kv head per task.
#pragma omp parallel
  {
    std::vector<T> p(tile_q * tile_k), ds(tile_q * tile_k);  // (tile_q, tile_k) each
#pragma omp for collapse(3) schedule(dynamic)
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t kvh = 0; kvh < s.kv_heads; ++kvh) {
        for (std::int64_t kt = 0; kt < key_tiles; ++kt) {
          const std::int64_t k0 = kt * tile_k, cols = std::min(tile_k, s.seq - k0);
          const std::int64_t kv_at = ((b * s.seq + k0) * s.kv_heads + kvh) * hd;
          for (std::int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
            // The first query tile that sees key k0 is the one holding query k0.
            for (std::int64_t q0 = (k0 / tile_q) * tile_q; q0 < s.seq; q0 += tile_q) {
              const std::int64_t rows = std::min(tile_q, s.seq - q0);
              const std::int64_t q_at = ((b * s.seq + q0) * s.heads + h) * hd;
              const std::int64_t row_at = (b * s.heads + h) * s.seq + q0;
              detail::attention_tile_backward(s, q + q_at, dout + q_at, k + kv_at, v + kv_at, lse + row_at,
                                              rowdot.data() + row_at, q0, rows, k0, cols, p.data(), ds.data());
              gemm(Trans::yes, Trans::no, cols, hd, rows, T(1), p.data(), tile_k, dout + q_at, q_stride, T(1),
                   dv + kv_at, kv_stride);  // dV_j += P^T dO_i
              gemm(Trans::yes, Trans::no, cols, hd, rows, scale, ds.data(), tile_k, q + q_at, q_stride, T(1),
                   dk + kv_at, kv_stride);  // dK_j += scale dS^T Q_i
            }
          }
        }
      }
    }
  }

  // Pass 2: dQ, one query tile of one head per task.
#pragma omp parallel
  {
    std::vector<T> p(tile_q * tile_k), ds(tile_q * tile_k);  // (tile_q, tile_k) each
#pragma omp for collapse(3) schedule(dynamic)
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t h = 0; h < s.heads; ++h) {
        for (std::int64_t qt = 0; qt < query_tiles; ++qt) {
          const std::int64_t q0 = qt * tile_q, rows = std::min(tile_q, s.seq - q0);
          const std::int64_t q_at = ((b * s.seq + q0) * s.heads + h) * hd;
          const std::int64_t row_at = (b * s.heads + h) * s.seq + q0;
          const std::int64_t key_end = q0 + rows;
          for (std::int64_t k0 = 0; k0 < key_end; k0 += tile_k) {
            const std::int64_t cols = std::min(tile_k, key_end - k0);
            const std::int64_t kv_at = ((b * s.seq + k0) * s.kv_heads + h / group) * hd;
            detail::attention_tile_backward(s, q + q_at, dout + q_at, k + kv_at, v + kv_at, lse + row_at,
                                            rowdot.data() + row_at, q0, rows, k0, cols, p.data(), ds.data());
            gemm(Trans::no, Trans::no, rows, hd, cols, scale, ds.data(), tile_k, k + kv_at, kv_stride, T(1),
                 dq + q_at, q_stride);  // dQ_i += scale dS K_j
          }
        }
      }
    }
  }
}

}  // namespace plait::kernels
