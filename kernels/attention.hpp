// Causal self-attention with grouped-query attention on the CPU, the reference for kernels/attention.cuh: a tile of
// queries at a time, so no T x T matrix is ever formed; forward keeps the logsumexp of each row, from which backward
// recomputes the probabilities. Each tile meets all the keys it sees in one product, so the products go to BLAS
// (single-threaded inside the OpenMP regions) in shapes it runs near its peak, not as 64 x 64 pieces.
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "plait/kernels/blas.hpp"
#include "plait/kernels/vector_math.hpp"

namespace plait::kernels {

// Query head h reads kv head h / (heads / kv_heads); kv_heads == heads is ordinary multi-head attention.
struct AttentionShape {
  std::int64_t batch, seq, heads, kv_heads, head_dim;
  double scale;  // usually 1 / sqrt(head_dim)
};

// Rows of queries per tile. A tile of queries meets all the keys it sees (up to its last query) in one product, so
// the scores of one tile, (tile rows, keys), are the largest buffer a thread holds: 512 KiB at T = 2048. Measured on
// the 2-core development VM (fp32, 2 threads): 64 rows beat 32 and 128 at T 256 to 2048 (bench/README.md).
struct AttentionTiles {
  static constexpr std::int64_t queries = 64;
};

// Forward, per (batch, head, query tile): S = scale Q K^T over the keys up to the tile's last query (one GEMM), the
// causal softmax of each row in place (exact: the whole row is there, no running rescale), O = P V (one GEMM),
// lse = max + log(sum) per row.
template <class T>
void attention_forward(const AttentionShape& s,
                       const T* q,  // (B, T, H, hd)
                       const T* k,  // (B, T, Hkv, hd)
                       const T* v,  // (B, T, Hkv, hd)
                       T* out,      // (B, T, H, hd)
                       T* lse) {    // (B, H, T)
  assert(s.heads % s.kv_heads == 0 && "query heads come in equal groups per kv head");
  constexpr std::int64_t tile_q = AttentionTiles::queries;
  const std::int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const std::int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;  // one token to the next
  const std::int64_t query_tiles = (s.seq + tile_q - 1) / tile_q;
  const T scale = static_cast<T>(s.scale);
#pragma omp parallel
  {
    std::vector<T> probs(static_cast<std::size_t>(tile_q * s.seq));  // (rows, keys): the scores, then exp(s - max)
    std::vector<T> acc(static_cast<std::size_t>(tile_q * hd));       // (rows, hd): P V before division by the sums
    std::vector<T> row_max(tile_q), row_sum(tile_q);
    // Later query tiles see more keys: dynamic scheduling evens out the causal triangle.
#pragma omp for collapse(3) schedule(dynamic)
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t h = 0; h < s.heads; ++h) {
        for (std::int64_t qt = 0; qt < query_tiles; ++qt) {
          const std::int64_t q0 = qt * tile_q, rows = std::min(tile_q, s.seq - q0);
          const std::int64_t keys = q0 + rows;  // causal: no query of this tile sees a key at or past this
          const T* q_tile = q + ((b * s.seq + q0) * s.heads + h) * hd;          // (rows, hd), stride q_stride
          const T* k_head = k + (b * s.seq * s.kv_heads + h / group) * hd;      // (keys, hd), stride kv_stride
          const T* v_head = v + (b * s.seq * s.kv_heads + h / group) * hd;      // (keys, hd), stride kv_stride
          gemm(Trans::no, Trans::yes, rows, keys, hd, scale, q_tile, q_stride, k_head, kv_stride, T(0), probs.data(),
               keys);  // S = scale Q K^T
          for (std::int64_t r = 0; r < rows; ++r) {
            T* p = probs.data() + r * keys;
            const std::int64_t visible = q0 + r + 1;  // query q0 + r sees keys 0 .. q0 + r
            T m = p[0];
#pragma omp simd reduction(max : m)
            for (std::int64_t c = 1; c < visible; ++c) m = std::max(m, p[c]);
            T sum = 0;
#pragma omp simd reduction(+ : sum)
            for (std::int64_t c = 0; c < visible; ++c) {
              p[c] = exp_approx(p[c] - m);
              sum += p[c];
            }
            std::fill(p + visible, p + keys, T(0));  // masked keys
            row_max[r] = m;
            row_sum[r] = sum;
          }
          gemm(Trans::no, Trans::no, rows, hd, keys, T(1), probs.data(), keys, v_head, kv_stride, T(0), acc.data(),
               hd);  // P V
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

// Backward, per (batch, kv head), so that every gradient element has one owner and a fixed order of summation (no
// atomics, bitwise the same on any thread count): over the group's query heads and each query tile i, with the
// keys j up to the tile's last query in one product each,
//   P = exp(scale Q_i K^T - lse)    dP = dO_i V^T    dS = P * (dP - D_i)       (causal mask: 0 past the diagonal)
//   dQ_i += scale dS K    dV += P^T dO_i    dK += scale dS^T Q_i
// FlashAttention-2's five products, with D_i = rowsum(dO_i * O_i) computed first.
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
  constexpr std::int64_t tile_q = AttentionTiles::queries;
  const std::int64_t hd = s.head_dim, group = s.heads / s.kv_heads;
  const std::int64_t q_stride = s.heads * hd, kv_stride = s.kv_heads * hd;
  const std::int64_t query_tiles = (s.seq + tile_q - 1) / tile_q;
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

#pragma omp parallel
  {
    std::vector<T> p(static_cast<std::size_t>(tile_q * s.seq)), ds(p.size());  // (rows, keys) each
#pragma omp for collapse(2) schedule(dynamic)
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t kvh = 0; kvh < s.kv_heads; ++kvh) {
        const std::int64_t kv_at = (b * s.seq * s.kv_heads + kvh) * hd;  // key 0 of this head; stride kv_stride
        for (std::int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          for (std::int64_t qt = 0; qt < query_tiles; ++qt) {
            const std::int64_t q0 = qt * tile_q, rows = std::min(tile_q, s.seq - q0), keys = q0 + rows;
            const std::int64_t q_at = ((b * s.seq + q0) * s.heads + h) * hd;
            const T* lse_rows = lse + (b * s.heads + h) * s.seq + q0;
            const T* d_rows = rowdot.data() + (b * s.heads + h) * s.seq + q0;
            gemm(Trans::no, Trans::yes, rows, keys, hd, scale, q + q_at, q_stride, k + kv_at, kv_stride, T(0),
                 p.data(), keys);  // S = scale Q K^T
            gemm(Trans::no, Trans::yes, rows, keys, hd, T(1), dout + q_at, q_stride, v + kv_at, kv_stride, T(0),
                 ds.data(), keys);  // dP = dO V^T
            for (std::int64_t r = 0; r < rows; ++r) {
              T* pr = p.data() + r * keys;
              T* dsr = ds.data() + r * keys;
              const std::int64_t visible = q0 + r + 1;
              const T lse_r = lse_rows[r], d_r = d_rows[r];
#pragma omp simd
              for (std::int64_t c = 0; c < visible; ++c) {
                pr[c] = exp_approx(pr[c] - lse_r);
                dsr[c] = pr[c] * (dsr[c] - d_r);
              }
              std::fill(pr + visible, pr + keys, T(0));
              std::fill(dsr + visible, dsr + keys, T(0));
            }
            gemm(Trans::no, Trans::no, rows, hd, keys, scale, ds.data(), keys, k + kv_at, kv_stride, T(1), dq + q_at,
                 q_stride);  // dQ_i += scale dS K
            gemm(Trans::yes, Trans::no, keys, hd, rows, T(1), p.data(), keys, dout + q_at, q_stride, T(1), dv + kv_at,
                 kv_stride);  // dV += P^T dO_i
            gemm(Trans::yes, Trans::no, keys, hd, rows, scale, ds.data(), keys, q + q_at, q_stride, T(1), dk + kv_at,
                 kv_stride);  // dK += scale dS^T Q_i
          }
        }
      }
    }
  }
}

}  // namespace plait::kernels
