// Causal self-attention with grouped-query attention on the GPU, in the FlashAttention-2 manner (reference:
// attention.hpp). Forward: one block per (query tile, batch x head) walks the key tiles up to the diagonal with an
// online softmax; the T x T matrix never exists, only a (queries x keys) tile of it in shared memory, and the
// logsumexp of each row is saved (fp32) for backward. Backward is deterministic, with no atomics (every gradient
// element has one writer and a fixed order of summation), in the reference's two passes and a sum over GQA groups:
//
//   forward, block (i, b*H+h): for key tiles j <= i:    S = scale Q_i K_j^T -> online softmax -> O_i += P V_j
//   dK, dV,  block (j, b*H+h): for query tiles i >= j:  P = exp(S - lse)   dP = dO_i V_j^T   dS = P (dP - D)
//                                                       dV_j^h += P^T dO_i   dK_j^h += scale dS^T Q_i
//   group sum, elementwise:    dk, dv of kv head g += the sums of dK^h, dV^h over g's query heads h, in head order
//   dQ,      block (i, b*H+h): for key tiles j <= i:    P, dS again from lse   ->   dQ_i += scale dS K_j
//
// Without GQA (heads == kv_heads) the dK/dV blocks add into dk and dv themselves and the group sum is skipped. The dQ
// pass recomputes S and dP (seven tile products instead of FA2's five), the price of determinism without atomics; in
// exchange both passes launch a block per query head and tile (batch x heads x T / 64 blocks, not x kv_heads).
//
// Tile products run on tensor cores (nvcuda::wmma, bf16 in, fp32 accumulate, sm_80+) for bf16, and on CUDA cores in
// fp32 for float (the fp32 path exists to check the algorithm against the fp32 reference to 1e-5). Head dims 32, 64
// and 128 are instantiated.
// Pitfalls: shared-memory tiles are staged through fp32 (S, O, dK, dV), which keeps the code short and readable but
// is slower than FA2's register-resident accumulators; see bench/cuda/attention_bench.cu for what it measures. Under
// GQA the workspace holds every query head's dK and dV in fp32: 8 bytes per element of q.
#pragma once

#include <mma.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "plait/kernels/attention.hpp"  // AttentionShape
#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

// Rows of queries and keys per tile and warps per block. Chosen to fit shared memory on sm_80 (163 KiB) and sm_90
// (227 KiB) with head dim 128 (the static_asserts below check every head dim); not yet tuned on a GPU (no GPU was lent
// when this was written). The forward and dQ blocks hold a query tile and walk key tiles; the dK/dV blocks hold a key
// tile and walk query tiles.
struct AttentionTiles {
  int queries;
  int keys;
  int warps;
};

template <class T, int HeadDim>
inline constexpr AttentionTiles attention_forward_tiles =
    std::is_same_v<T, bf16> ? AttentionTiles{64, 64, 8} : AttentionTiles{32, 32, 4};
template <class T, int HeadDim>
inline constexpr AttentionTiles attention_key_value_grad_tiles =
    std::is_same_v<T, bf16> ? AttentionTiles{32, 64, 8} : AttentionTiles{32, 32, 4};
template <class T, int HeadDim>
inline constexpr AttentionTiles attention_query_grad_tiles =
    std::is_same_v<T, bf16> ? AttentionTiles{64, 64, 8} : AttentionTiles{32, 32, 4};

// fp32 scratch that attention_backward needs: D = rowsum(dO * O) (B, H, T), and under GQA (heads > kv_heads) each
// query head's dK and dV before the group sum, (B, T, H, hd) each.
inline std::int64_t attention_backward_workspace_floats(const AttentionShape& s) {
  const std::int64_t rowdot = s.batch * s.heads * s.seq;
  const bool grouped = s.heads > s.kv_heads;
  return rowdot + (grouped ? 2 * s.batch * s.seq * s.heads * s.head_dim : 0);
}

namespace detail {

enum class Major { row, col };  // A(i, k) = a[i * lda + k] (row) or a[k * lda + i] (col); B(k, j) likewise

// Row padding of shared tiles: 16 bytes, so rows of 16-byte vectors stay aligned and 8 consecutive rows of a wmma
// load fall in different banks.
template <class T>
inline constexpr int pad = 16 / static_cast<int>(sizeof(T));

constexpr std::size_t align128(std::size_t bytes) { return (bytes + 127) / 128 * 128; }

// C (M x N, fp32, row-major, ldc) = [C +] A (M x K) B (K x N), A and B in shared memory, by the whole block.
// The caller synchronizes before (inputs ready) and after (C ready).
template <int M, int N, int K, Major MA, Major MB, bool Accumulate, int Warps, class T>
__device__ __forceinline__ void tile_product(const T* a, int lda, const T* b, int ldb, float* c, int ldc) {
  if constexpr (std::is_same_v<T, bf16>) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    namespace wmma = nvcuda::wmma;
    using LayoutA = std::conditional_t<MA == Major::row, wmma::row_major, wmma::col_major>;
    using LayoutB = std::conditional_t<MB == Major::row, wmma::row_major, wmma::col_major>;
    static_assert(M % 16 == 0 && N % 16 == 0 && K % 16 == 0, "tensor-core tiles are 16 x 16 x 16");
    const int warp = static_cast<int>(threadIdx.x) / 32;
    for (int tile = warp; tile < (M / 16) * (N / 16); tile += Warps) {
      const int i0 = tile / (N / 16) * 16, j0 = tile % (N / 16) * 16;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      if constexpr (Accumulate) {
        wmma::load_matrix_sync(acc, c + i0 * ldc + j0, ldc, wmma::mem_row_major);
      } else {
        wmma::fill_fragment(acc, 0.0f);
      }
      for (int k0 = 0; k0 < K; k0 += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, LayoutA> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LayoutB> fb;
        wmma::load_matrix_sync(fa, MA == Major::row ? a + i0 * lda + k0 : a + k0 * lda + i0, lda);
        wmma::load_matrix_sync(fb, MB == Major::row ? b + k0 * ldb + j0 : b + j0 * ldb + k0, ldb);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(c + i0 * ldc + j0, acc, ldc, wmma::mem_row_major);
    }
#else
    __trap();  // bf16 tensor-core tiles need sm_80 or newer
#endif
  } else {
    for (int at = static_cast<int>(threadIdx.x); at < M * N; at += Warps * 32) {
      const int i = at / N, j = at % N;
      float sum = Accumulate ? c[i * ldc + j] : 0.0f;
#pragma unroll 8
      for (int k = 0; k < K; ++k) {
        const float x = MA == Major::row ? a[i * lda + k] : a[k * lda + i];
        const float y = MB == Major::row ? b[k * ldb + j] : b[j * ldb + k];
        sum = fmaf(x, y, sum);
      }
      c[i * ldc + j] = sum;
    }
  }
}

// rows x HeadDim of a (B, T, heads, hd) tensor into shared memory (row stride ld), zeros past the sequence end.
// 16-byte vectors: hd * sizeof(T) is a multiple of 16 and the launcher checks the base pointers' alignment.
template <int Rows, int HeadDim, int Threads, class T>
__device__ __forceinline__ void load_tile(T* tile, int ld, const T* x, std::int64_t first_row, std::int64_t seq,
                                          std::int64_t row_stride) {
  constexpr int vec = 16 / sizeof(T), vecs_per_row = HeadDim / vec;
  for (int at = static_cast<int>(threadIdx.x); at < Rows * vecs_per_row; at += Threads) {
    const int r = at / vecs_per_row, d = at % vecs_per_row * vec;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (first_row + r < seq) value = *reinterpret_cast<const uint4*>(x + (first_row + r) * row_stride + d);
    *reinterpret_cast<uint4*>(tile + r * ld + d) = value;
  }
}

template <class T, int HeadDim>
struct ForwardSmem {
  static constexpr AttentionTiles tiles = attention_forward_tiles<T, HeadDim>;
  static constexpr int rows = tiles.queries, cols = tiles.keys, threads = tiles.warps * 32;
  static constexpr int ldt = HeadDim + pad<T>, ldp = cols + pad<T>, lds = cols + 4, ldo = HeadDim + 4;
  static constexpr std::size_t q = 0;
  static constexpr std::size_t k = align128(q + sizeof(T) * rows * ldt);
  static constexpr std::size_t v = align128(k + sizeof(T) * cols * ldt);
  static constexpr std::size_t s = align128(v + sizeof(T) * cols * ldt);  // scores, fp32
  static constexpr std::size_t p = align128(s + sizeof(float) * rows * lds);  // probabilities, T (tensor-core input)
  static constexpr std::size_t o = align128(p + sizeof(T) * rows * ldp);  // output accumulator, fp32
  static constexpr std::size_t stats = align128(o + sizeof(float) * rows * ldo);  // running max, running sum
  static constexpr std::size_t bytes = stats + sizeof(float) * 2 * rows;
};

template <class T, int HeadDim>
__global__ void __launch_bounds__(ForwardSmem<T, HeadDim>::threads)
    attention_forward_kernel(AttentionShape s, const T* q, const T* k, const T* v, T* out, float* lse) {
  using L = ForwardSmem<T, HeadDim>;
  constexpr int Br = L::rows, Bc = L::cols, Threads = L::threads, Warps = L::tiles.warps;
  extern __shared__ __align__(128) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem + L::q);          // (Br, hd)
  T* k_s = reinterpret_cast<T*>(smem + L::k);          // (Bc, hd)
  T* v_s = reinterpret_cast<T*>(smem + L::v);          // (Bc, hd)
  float* s_s = reinterpret_cast<float*>(smem + L::s);  // (Br, Bc)
  T* p_s = reinterpret_cast<T*>(smem + L::p);          // (Br, Bc)
  float* o_s = reinterpret_cast<float*>(smem + L::o);  // (Br, hd)
  float* row_max = reinterpret_cast<float*>(smem + L::stats);
  float* row_sum = row_max + Br;

  // The last query tiles see the most keys: start them first.
  const std::int64_t q0 = (static_cast<std::int64_t>(gridDim.x) - 1 - blockIdx.x) * Br;
  const std::int64_t b = blockIdx.y / s.heads, h = blockIdx.y % s.heads, kvh = h / (s.heads / s.kv_heads);
  const std::int64_t q_stride = s.heads * HeadDim, kv_stride = s.kv_heads * HeadDim;
  const T* q_base = q + b * s.seq * q_stride + h * HeadDim;
  const T* k_base = k + b * s.seq * kv_stride + kvh * HeadDim;
  const T* v_base = v + b * s.seq * kv_stride + kvh * HeadDim;
  const float scale = static_cast<float>(s.scale);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;

  load_tile<Br, HeadDim, Threads>(q_s, L::ldt, q_base, q0, s.seq, q_stride);
  for (int at = threadIdx.x; at < Br * L::ldo; at += Threads) o_s[at] = 0.0f;
  for (int r = threadIdx.x; r < Br; r += Threads) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
  }

  const std::int64_t key_end = q0 + Br < s.seq ? q0 + Br : s.seq;  // causal: no query here sees a key past this
  for (std::int64_t k0 = 0; k0 < key_end; k0 += Bc) {
    __syncthreads();  // the previous tile's product is done with k_s, v_s, p_s
    load_tile<Bc, HeadDim, Threads>(k_s, L::ldt, k_base, k0, s.seq, kv_stride);
    load_tile<Bc, HeadDim, Threads>(v_s, L::ldt, v_base, k0, s.seq, kv_stride);
    __syncthreads();
    tile_product<Br, Bc, HeadDim, Major::row, Major::col, false, Warps>(q_s, L::ldt, k_s, L::ldt, s_s, L::lds);
    __syncthreads();

    // Online softmax, one warp per row. The first key tile holds key 0, visible to every query, so the running max is
    // finite from then on; a row that sees no key of a later tile keeps its max and sum (rescale 1, adds 0).
    for (int r = warp; r < Br; r += Warps) {
      const std::int64_t query = q0 + r;
      float tile_max = -INFINITY;
      for (int j = lane; j < Bc; j += 32) {
        const float score = k0 + j <= query ? s_s[r * L::lds + j] * scale : -INFINITY;
        s_s[r * L::lds + j] = score;
        tile_max = fmaxf(tile_max, score);
      }
      for (int offset = 16; offset > 0; offset /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(~0u, tile_max, offset));
      const float old_max = row_max[r];
      const float new_max = fmaxf(old_max, tile_max);
      float sum = 0.0f;
      for (int j = lane; j < Bc; j += 32) {
        const float p = exp_for<T>(s_s[r * L::lds + j] - new_max);  // masked: exp(-inf) = 0
        p_s[r * L::ldp + j] = from_float<T>(p);
        sum += p;
      }
      for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(~0u, sum, offset);
      const float rescale = exp_for<T>(old_max - new_max);  // first tile: exp(-inf) = 0
      for (int d = lane; d < HeadDim; d += 32) o_s[r * L::ldo + d] *= rescale;
      __syncwarp();
      if (lane == 0) {
        row_max[r] = new_max;
        row_sum[r] = row_sum[r] * rescale + sum;
      }
    }
    __syncthreads();
    tile_product<Br, HeadDim, Bc, Major::row, Major::row, true, Warps>(p_s, L::ldp, v_s, L::ldt, o_s, L::ldo);
  }
  __syncthreads();

  T* out_base = out + b * s.seq * q_stride + h * HeadDim;
  for (int at = threadIdx.x; at < Br * HeadDim; at += Threads) {
    const int r = at / HeadDim, d = at % HeadDim;
    if (q0 + r < s.seq) out_base[(q0 + r) * q_stride + d] = from_float<T>(o_s[r * L::ldo + d] / row_sum[r]);
  }
  for (int r = threadIdx.x; r < Br; r += Threads)
    if (q0 + r < s.seq) lse[(b * s.heads + h) * s.seq + q0 + r] = row_max[r] + logf(row_sum[r]);
}

// D = rowsum(dO * O) per (b, h, t), one warp per row.
template <class T, int HeadDim>
__global__ void attention_rowdot_kernel(AttentionShape s, const T* out, const T* dout, float* rowdot) {
  const std::int64_t rows = s.batch * s.seq * s.heads;
  const int lane = threadIdx.x % 32;
  for (std::int64_t row = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) / 32; row < rows;
       row += std::int64_t(gridDim.x) * blockDim.x / 32) {
    float sum = 0.0f;
    for (int d = lane; d < HeadDim; d += 32)
      sum += to_float(out[row * HeadDim + d]) * to_float(dout[row * HeadDim + d]);
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(~0u, sum, offset);
    // row = (b * T + t) * H + h  ->  (b, h, t)
    const std::int64_t h = row % s.heads, bt = row / s.heads, b = bt / s.seq, t = bt % s.seq;
    if (lane == 0) rowdot[(b * s.heads + h) * s.seq + t] = sum;
  }
}

// dK/dV pass: the block's key tile (K, V and the fp32 dK, dV accumulators) stays; query tiles come and go.
template <class T, int HeadDim>
struct KeyValueGradSmem {
  static constexpr AttentionTiles tiles = attention_key_value_grad_tiles<T, HeadDim>;
  static constexpr int rows = tiles.queries, cols = tiles.keys, threads = tiles.warps * 32;
  static constexpr int ldt = HeadDim + pad<T>, ldp = cols + pad<T>, lds = cols + 4, ldo = HeadDim + 4;
  static constexpr std::size_t k = 0;
  static constexpr std::size_t v = align128(k + sizeof(T) * cols * ldt);
  static constexpr std::size_t q = align128(v + sizeof(T) * cols * ldt);
  static constexpr std::size_t dout = align128(q + sizeof(T) * rows * ldt);
  static constexpr std::size_t s = align128(dout + sizeof(T) * rows * ldt);   // scores, fp32
  static constexpr std::size_t dp = align128(s + sizeof(float) * rows * lds);  // dO V^T, fp32
  static constexpr std::size_t p = align128(dp + sizeof(float) * rows * lds);  // P, T (tensor-core input)
  static constexpr std::size_t ds = align128(p + sizeof(T) * rows * ldp);      // dS, T
  static constexpr std::size_t dk = align128(ds + sizeof(T) * rows * ldp);     // fp32 accumulators of the key tile
  static constexpr std::size_t dv = align128(dk + sizeof(float) * cols * ldo);
  static constexpr std::size_t stats = align128(dv + sizeof(float) * cols * ldo);  // lse and D of the query tile
  static constexpr std::size_t bytes = stats + sizeof(float) * 2 * rows;
};

// dQ pass: the block's query tile (Q, dO, their lse and D, the fp32 dQ accumulator) stays; key tiles come and go.
template <class T, int HeadDim>
struct QueryGradSmem {
  static constexpr AttentionTiles tiles = attention_query_grad_tiles<T, HeadDim>;
  static constexpr int rows = tiles.queries, cols = tiles.keys, threads = tiles.warps * 32;
  static constexpr int ldt = HeadDim + pad<T>, ldp = cols + pad<T>, lds = cols + 4, ldo = HeadDim + 4;
  static constexpr std::size_t q = 0;
  static constexpr std::size_t dout = align128(q + sizeof(T) * rows * ldt);
  static constexpr std::size_t k = align128(dout + sizeof(T) * rows * ldt);
  static constexpr std::size_t v = align128(k + sizeof(T) * cols * ldt);
  static constexpr std::size_t s = align128(v + sizeof(T) * cols * ldt);      // scores, fp32
  static constexpr std::size_t dp = align128(s + sizeof(float) * rows * lds);  // dO V^T, fp32
  static constexpr std::size_t ds = align128(dp + sizeof(float) * rows * lds);  // dS, T (tensor-core input)
  static constexpr std::size_t dq = align128(ds + sizeof(T) * rows * ldp);      // fp32 accumulator of the query tile
  static constexpr std::size_t stats = align128(dq + sizeof(float) * rows * ldo);  // lse and D of the query tile
  static constexpr std::size_t bytes = stats + sizeof(float) * 2 * rows;
};

// Every layout, for both storage types and every instantiated head dim, within a block's limit.
template <template <class, int> class Smem>
constexpr bool fits_every_head_dim(std::size_t limit) {
  return Smem<bf16, 32>::bytes <= limit && Smem<bf16, 64>::bytes <= limit && Smem<bf16, 128>::bytes <= limit &&
         Smem<float, 32>::bytes <= limit && Smem<float, 64>::bytes <= limit && Smem<float, 128>::bytes <= limit;
}
static_assert(fits_every_head_dim<ForwardSmem>(sm80_max_shared_bytes) &&
                  fits_every_head_dim<ForwardSmem>(sm90_max_shared_bytes),
              "the forward tiles must fit sm_80's 163 KiB and sm_90's 227 KiB of shared memory per block: shrink "
              "attention_forward_tiles");
static_assert(fits_every_head_dim<KeyValueGradSmem>(sm80_max_shared_bytes) &&
                  fits_every_head_dim<KeyValueGradSmem>(sm90_max_shared_bytes),
              "the dK/dV tiles must fit sm_80's 163 KiB and sm_90's 227 KiB of shared memory per block: shrink "
              "attention_key_value_grad_tiles");
static_assert(fits_every_head_dim<QueryGradSmem>(sm80_max_shared_bytes) &&
                  fits_every_head_dim<QueryGradSmem>(sm90_max_shared_bytes),
              "the dQ tiles must fit sm_80's 163 KiB and sm_90's 227 KiB of shared memory per block: shrink "
              "attention_query_grad_tiles");

// Block (j, b*H+h): dK_j and dV_j of query head h, over the query tiles at or below the diagonal. Without GQA they are
// added into dk and dv; under GQA they are written (fp32) to this head's slice of dk_part and dv_part.
template <class T, int HeadDim>
__global__ void __launch_bounds__(KeyValueGradSmem<T, HeadDim>::threads)
    attention_key_value_grad_kernel(AttentionShape s, const T* q, const T* k, const T* v, const float* lse,
                                    const T* dout, const float* rowdot, T* dk, T* dv, float* dk_part,
                                    float* dv_part) {
  using L = KeyValueGradSmem<T, HeadDim>;
  constexpr int Br = L::rows, Bc = L::cols, Threads = L::threads, Warps = L::tiles.warps;
  extern __shared__ __align__(128) unsigned char smem[];
  T* k_s = reinterpret_cast<T*>(smem + L::k);            // (Bc, hd)
  T* v_s = reinterpret_cast<T*>(smem + L::v);            // (Bc, hd)
  T* q_s = reinterpret_cast<T*>(smem + L::q);            // (Br, hd)
  T* do_s = reinterpret_cast<T*>(smem + L::dout);        // (Br, hd)
  float* s_s = reinterpret_cast<float*>(smem + L::s);    // (Br, Bc)
  float* dp_s = reinterpret_cast<float*>(smem + L::dp);  // (Br, Bc)
  T* p_s = reinterpret_cast<T*>(smem + L::p);            // (Br, Bc)
  T* ds_s = reinterpret_cast<T*>(smem + L::ds);          // (Br, Bc)
  float* dk_s = reinterpret_cast<float*>(smem + L::dk);  // (Bc, hd)
  float* dv_s = reinterpret_cast<float*>(smem + L::dv);  // (Bc, hd)
  float* lse_s = reinterpret_cast<float*>(smem + L::stats);
  float* rowdot_s = lse_s + Br;

  // Key tile 0 meets every query tile: the first blocks carry the most work.
  const std::int64_t k0 = static_cast<std::int64_t>(blockIdx.x) * Bc;
  const std::int64_t b = blockIdx.y / s.heads, h = blockIdx.y % s.heads, group = s.heads / s.kv_heads;
  const std::int64_t kvh = h / group;
  const std::int64_t q_stride = s.heads * HeadDim, kv_stride = s.kv_heads * HeadDim;
  const float scale = static_cast<float>(s.scale);
  const int tid = static_cast<int>(threadIdx.x);

  load_tile<Bc, HeadDim, Threads>(k_s, L::ldt, k + b * s.seq * kv_stride + kvh * HeadDim, k0, s.seq, kv_stride);
  load_tile<Bc, HeadDim, Threads>(v_s, L::ldt, v + b * s.seq * kv_stride + kvh * HeadDim, k0, s.seq, kv_stride);
  for (int at = tid; at < Bc * L::ldo; at += Threads) {
    dk_s[at] = 0.0f;
    dv_s[at] = 0.0f;
  }

  const T* q_base = q + b * s.seq * q_stride + h * HeadDim;
  const T* do_base = dout + b * s.seq * q_stride + h * HeadDim;
  const std::int64_t stats_base = (b * s.heads + h) * s.seq;
  // The first query tile that sees key k0 is the one holding query k0.
  for (std::int64_t q0 = k0 / Br * Br; q0 < s.seq; q0 += Br) {
    __syncthreads();  // the previous query tile's products are done with q_s, do_s, p_s, ds_s
    load_tile<Br, HeadDim, Threads>(q_s, L::ldt, q_base, q0, s.seq, q_stride);
    load_tile<Br, HeadDim, Threads>(do_s, L::ldt, do_base, q0, s.seq, q_stride);
    for (int r = tid; r < Br; r += Threads) {
      const bool inside = q0 + r < s.seq;
      lse_s[r] = inside ? lse[stats_base + q0 + r] : 0.0f;
      rowdot_s[r] = inside ? rowdot[stats_base + q0 + r] : 0.0f;
    }
    __syncthreads();
    tile_product<Br, Bc, HeadDim, Major::row, Major::col, false, Warps>(q_s, L::ldt, k_s, L::ldt, s_s, L::lds);
    tile_product<Br, Bc, HeadDim, Major::row, Major::col, false, Warps>(do_s, L::ldt, v_s, L::ldt, dp_s, L::lds);
    __syncthreads();
    // Masked entries (a key after the query, a query or key past the sequence end) are 0 in P and in dS.
    for (int at = tid; at < Br * Bc; at += Threads) {
      const int r = at / Bc, j = at % Bc;
      const std::int64_t query = q0 + r;
      const bool visible = k0 + j <= query && query < s.seq;
      const float p = visible ? exp_for<T>(s_s[r * L::lds + j] * scale - lse_s[r]) : 0.0f;
      const float ds = p * (dp_s[r * L::lds + j] - rowdot_s[r]);
      p_s[r * L::ldp + j] = from_float<T>(p);
      ds_s[r * L::ldp + j] = from_float<T>(ds);
    }
    __syncthreads();
    // dV += P^T dO and dK += dS^T Q (scaled once at the end): independent products into separate accumulators.
    tile_product<Bc, HeadDim, Br, Major::col, Major::row, true, Warps>(p_s, L::ldp, do_s, L::ldt, dv_s, L::ldo);
    tile_product<Bc, HeadDim, Br, Major::col, Major::row, true, Warps>(ds_s, L::ldp, q_s, L::ldt, dk_s, L::ldo);
  }
  __syncthreads();

  if (group == 1) {  // this head is its kv head's only one: add into dk, dv (kvh == h, kv_stride == q_stride)
    T* dk_base = dk + b * s.seq * kv_stride + kvh * HeadDim;
    T* dv_base = dv + b * s.seq * kv_stride + kvh * HeadDim;
    for (int at = tid; at < Bc * HeadDim; at += Threads) {
      const int j = at / HeadDim, d = at % HeadDim;
      if (k0 + j >= s.seq) continue;
      T* dk_at = dk_base + (k0 + j) * kv_stride + d;
      T* dv_at = dv_base + (k0 + j) * kv_stride + d;
      *dk_at = from_float<T>(to_float(*dk_at) + scale * dk_s[j * L::ldo + d]);
      *dv_at = from_float<T>(to_float(*dv_at) + dv_s[j * L::ldo + d]);
    }
  } else {  // one of several heads: its own slice of the fp32 partials, summed by attention_group_sum_kernel
    float* dk_base = dk_part + b * s.seq * q_stride + h * HeadDim;
    float* dv_base = dv_part + b * s.seq * q_stride + h * HeadDim;
    for (int at = tid; at < Bc * HeadDim; at += Threads) {
      const int j = at / HeadDim, d = at % HeadDim;
      if (k0 + j >= s.seq) continue;
      dk_base[(k0 + j) * q_stride + d] = scale * dk_s[j * L::ldo + d];
      dv_base[(k0 + j) * q_stride + d] = dv_s[j * L::ldo + d];
    }
  }
}

// dk, dv (B, T, Hkv, hd) += the partials (B, T, H, hd) of each kv head's group, summed in head order.
template <class T, int HeadDim>
__global__ void attention_group_sum_kernel(AttentionShape s, const float* dk_part, const float* dv_part, T* dk,
                                           T* dv) {
  const std::int64_t group = s.heads / s.kv_heads, n = s.batch * s.seq * s.kv_heads * HeadDim;
  for (std::int64_t at = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; at < n;
       at += std::int64_t(gridDim.x) * blockDim.x) {
    // at = (token * Hkv + kvh) * hd + d, token = b * T + t; the group's heads are kvh * group + 0, 1, ...
    const std::int64_t d = at % HeadDim, kvh = at / HeadDim % s.kv_heads, token = at / HeadDim / s.kv_heads;
    const std::int64_t first = (token * s.heads + kvh * group) * HeadDim + d;
    float sum_k = 0.0f, sum_v = 0.0f;
    for (std::int64_t g = 0; g < group; ++g) {
      sum_k += dk_part[first + g * HeadDim];
      sum_v += dv_part[first + g * HeadDim];
    }
    dk[at] = from_float<T>(to_float(dk[at]) + sum_k);
    dv[at] = from_float<T>(to_float(dv[at]) + sum_v);
  }
}

// Block (i, b*H+h): dQ_i of query head h, over the key tiles up to the diagonal, P and dS recomputed from lse and D;
// dq is added into once, at the end.
template <class T, int HeadDim>
__global__ void __launch_bounds__(QueryGradSmem<T, HeadDim>::threads)
    attention_query_grad_kernel(AttentionShape s, const T* q, const T* k, const T* v, const float* lse,
                                const T* dout, const float* rowdot, T* dq) {
  using L = QueryGradSmem<T, HeadDim>;
  constexpr int Br = L::rows, Bc = L::cols, Threads = L::threads, Warps = L::tiles.warps;
  extern __shared__ __align__(128) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem + L::q);            // (Br, hd)
  T* do_s = reinterpret_cast<T*>(smem + L::dout);        // (Br, hd)
  T* k_s = reinterpret_cast<T*>(smem + L::k);            // (Bc, hd)
  T* v_s = reinterpret_cast<T*>(smem + L::v);            // (Bc, hd)
  float* s_s = reinterpret_cast<float*>(smem + L::s);    // (Br, Bc)
  float* dp_s = reinterpret_cast<float*>(smem + L::dp);  // (Br, Bc)
  T* ds_s = reinterpret_cast<T*>(smem + L::ds);          // (Br, Bc)
  float* dq_s = reinterpret_cast<float*>(smem + L::dq);  // (Br, hd)
  float* lse_s = reinterpret_cast<float*>(smem + L::stats);
  float* rowdot_s = lse_s + Br;

  // The last query tiles see the most keys: start them first.
  const std::int64_t q0 = (static_cast<std::int64_t>(gridDim.x) - 1 - blockIdx.x) * Br;
  const std::int64_t b = blockIdx.y / s.heads, h = blockIdx.y % s.heads, kvh = h / (s.heads / s.kv_heads);
  const std::int64_t q_stride = s.heads * HeadDim, kv_stride = s.kv_heads * HeadDim;
  const T* k_base = k + b * s.seq * kv_stride + kvh * HeadDim;
  const T* v_base = v + b * s.seq * kv_stride + kvh * HeadDim;
  const std::int64_t stats_base = (b * s.heads + h) * s.seq;
  const float scale = static_cast<float>(s.scale);
  const int tid = static_cast<int>(threadIdx.x);

  load_tile<Br, HeadDim, Threads>(q_s, L::ldt, q + b * s.seq * q_stride + h * HeadDim, q0, s.seq, q_stride);
  load_tile<Br, HeadDim, Threads>(do_s, L::ldt, dout + b * s.seq * q_stride + h * HeadDim, q0, s.seq, q_stride);
  for (int r = tid; r < Br; r += Threads) {
    const bool inside = q0 + r < s.seq;
    lse_s[r] = inside ? lse[stats_base + q0 + r] : 0.0f;
    rowdot_s[r] = inside ? rowdot[stats_base + q0 + r] : 0.0f;
  }
  for (int at = tid; at < Br * L::ldo; at += Threads) dq_s[at] = 0.0f;

  const std::int64_t key_end = q0 + Br < s.seq ? q0 + Br : s.seq;  // causal: no query here sees a key past this
  for (std::int64_t k0 = 0; k0 < key_end; k0 += Bc) {
    __syncthreads();  // the previous key tile's product is done with k_s, ds_s (and the first: q_s, do_s are ready)
    load_tile<Bc, HeadDim, Threads>(k_s, L::ldt, k_base, k0, s.seq, kv_stride);
    load_tile<Bc, HeadDim, Threads>(v_s, L::ldt, v_base, k0, s.seq, kv_stride);
    __syncthreads();
    tile_product<Br, Bc, HeadDim, Major::row, Major::col, false, Warps>(q_s, L::ldt, k_s, L::ldt, s_s, L::lds);
    tile_product<Br, Bc, HeadDim, Major::row, Major::col, false, Warps>(do_s, L::ldt, v_s, L::ldt, dp_s, L::lds);
    __syncthreads();
    for (int at = tid; at < Br * Bc; at += Threads) {  // as in the dK/dV pass: masked entries are 0
      const int r = at / Bc, j = at % Bc;
      const std::int64_t query = q0 + r;
      const bool visible = k0 + j <= query && query < s.seq;
      const float p = visible ? exp_for<T>(s_s[r * L::lds + j] * scale - lse_s[r]) : 0.0f;
      ds_s[r * L::ldp + j] = from_float<T>(p * (dp_s[r * L::lds + j] - rowdot_s[r]));
    }
    __syncthreads();
    tile_product<Br, HeadDim, Bc, Major::row, Major::row, true, Warps>(ds_s, L::ldp, k_s, L::ldt, dq_s, L::ldo);
  }
  __syncthreads();

  T* dq_base = dq + b * s.seq * q_stride + h * HeadDim;
  for (int at = tid; at < Br * HeadDim; at += Threads) {
    const int r = at / HeadDim, d = at % HeadDim;
    if (q0 + r >= s.seq) continue;
    T* dq_at = dq_base + (q0 + r) * q_stride + d;
    *dq_at = from_float<T>(to_float(*dq_at) + scale * dq_s[r * L::ldo + d]);
  }
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline cudaError_t check_shape(const AttentionShape& s) {
  if (s.kv_heads <= 0 || s.heads % s.kv_heads != 0) return cudaErrorInvalidValue;  // equal groups per kv head
  if (s.head_dim != 32 && s.head_dim != 64 && s.head_dim != 128) return cudaErrorInvalidValue;  // instantiated
  if (s.batch * s.heads > 65535) return cudaErrorInvalidValue;  // gridDim.y holds batch x heads
  return cudaSuccess;
}

// Calls f(std::integral_constant<int, hd>{}) for the shape's head dim (one that check_shape accepted).
template <class F>
cudaError_t with_head_dim(std::int64_t head_dim, F&& f) {
  switch (head_dim) {
    case 32:
      return f(std::integral_constant<int, 32>{});
    case 64:
      return f(std::integral_constant<int, 64>{});
    case 128:
      return f(std::integral_constant<int, 128>{});
    default:
      return cudaErrorInvalidValue;
  }
}

template <class T, int HeadDim>
cudaError_t attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* out, float* lse,
                              cudaStream_t stream) {
  using L = ForwardSmem<T, HeadDim>;
  auto* kernel = attention_forward_kernel<T, HeadDim>;
  if (const cudaError_t e = allow_shared_memory(kernel, L::bytes); e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>(ceil_div(s.seq, L::rows)), static_cast<unsigned>(s.batch * s.heads));
  kernel<<<grid, L::threads, L::bytes, stream>>>(s, q, k, v, out, lse);
  return cudaGetLastError();
}

template <class T, int HeadDim>
cudaError_t attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* out,
                               const float* lse, const T* dout, T* dq, T* dk, T* dv, float* workspace,
                               cudaStream_t stream) {
  using KV = KeyValueGradSmem<T, HeadDim>;
  using Q = QueryGradSmem<T, HeadDim>;
  const bool grouped = s.heads > s.kv_heads;
  const std::int64_t q_elements = s.batch * s.seq * s.heads * HeadDim;
  float* rowdot = workspace;                                                  // (B, H, T)
  float* dk_part = grouped ? workspace + s.batch * s.heads * s.seq : nullptr;  // (B, T, H, hd)
  float* dv_part = grouped ? dk_part + q_elements : nullptr;                   // (B, T, H, hd)

  attention_rowdot_kernel<T, HeadDim><<<elementwise_blocks(s.batch * s.seq * s.heads * 32, 256), 256, 0, stream>>>(
      s, out, dout, rowdot);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;

  auto* key_value_kernel = attention_key_value_grad_kernel<T, HeadDim>;
  if (const cudaError_t e = allow_shared_memory(key_value_kernel, KV::bytes); e != cudaSuccess) return e;
  const dim3 key_grid(static_cast<unsigned>(ceil_div(s.seq, KV::cols)), static_cast<unsigned>(s.batch * s.heads));
  key_value_kernel<<<key_grid, KV::threads, KV::bytes, stream>>>(s, q, k, v, lse, dout, rowdot, dk, dv, dk_part,
                                                                 dv_part);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  if (grouped) {
    const std::int64_t kv_elements = s.batch * s.seq * s.kv_heads * HeadDim;
    attention_group_sum_kernel<T, HeadDim><<<elementwise_blocks(kv_elements, 256), 256, 0, stream>>>(s, dk_part,
                                                                                                    dv_part, dk, dv);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }

  auto* query_kernel = attention_query_grad_kernel<T, HeadDim>;
  if (const cudaError_t e = allow_shared_memory(query_kernel, Q::bytes); e != cudaSuccess) return e;
  const dim3 query_grid(static_cast<unsigned>(ceil_div(s.seq, Q::rows)), static_cast<unsigned>(s.batch * s.heads));
  query_kernel<<<query_grid, Q::threads, Q::bytes, stream>>>(s, q, k, v, lse, dout, rowdot, dq);
  return cudaGetLastError();
}

}  // namespace detail

// out = softmax(scale Q K^T, causal) V per head; lse (fp32) is the logsumexp of each row, for backward. Head dims 32,
// 64 and 128; cudaErrorInvalidValue for any other, for heads not a multiple of kv_heads, or batch x heads > 65535.
template <Storage T>
cudaError_t attention_forward(const AttentionShape& s,
                              const T* q,  // (B, T, H, hd)
                              const T* k,  // (B, T, Hkv, hd)
                              const T* v,  // (B, T, Hkv, hd)
                              T* out,      // (B, T, H, hd)
                              float* lse,  // (B, H, T)
                              cudaStream_t stream) {
  if (const cudaError_t e = detail::check_shape(s); e != cudaSuccess) return e;
  if (!detail::aligned16(q) || !detail::aligned16(k) || !detail::aligned16(v)) return cudaErrorMisalignedAddress;
  if (s.batch * s.seq * s.heads == 0) return cudaSuccess;
  return detail::with_head_dim(s.head_dim, [&](auto head_dim) {
    return detail::attention_forward<T, decltype(head_dim)::value>(s, q, k, v, out, lse, stream);
  });
}

// dq, dk, dv +=, deterministically (bitwise the same on every run). workspace: attention_backward_workspace_floats(s)
// floats of device memory.
template <Storage T>
cudaError_t attention_backward(const AttentionShape& s,
                               const T* q,         // (B, T, H, hd)
                               const T* k,         // (B, T, Hkv, hd)
                               const T* v,         // (B, T, Hkv, hd)
                               const T* out,       // (B, T, H, hd)
                               const float* lse,   // (B, H, T)
                               const T* dout,      // (B, T, H, hd)
                               T* dq,              // (B, T, H, hd), +=
                               T* dk,              // (B, T, Hkv, hd), +=
                               T* dv,              // (B, T, Hkv, hd), +=
                               float* workspace, cudaStream_t stream) {
  if (const cudaError_t e = detail::check_shape(s); e != cudaSuccess) return e;
  if (!detail::aligned16(q) || !detail::aligned16(k) || !detail::aligned16(v) || !detail::aligned16(dout))
    return cudaErrorMisalignedAddress;
  if (s.batch * s.seq * s.heads == 0) return cudaSuccess;
  return detail::with_head_dim(s.head_dim, [&](auto head_dim) {
    return detail::attention_backward<T, decltype(head_dim)::value>(s, q, k, v, out, lse, dout, dq, dk, dv,
                                                                    workspace, stream);
  });
}

}  // namespace plait::kernels::device
