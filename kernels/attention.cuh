// Causal self-attention with grouped-query attention on the GPU, in the FlashAttention-2 manner (reference:
// attention.hpp). Forward: one block per (query tile, batch x head) walks the key tiles up to the diagonal with an
// online softmax; the T x T matrix never exists, only a (queries x keys) tile of it in shared memory, and the
// logsumexp of each row is saved (fp32) for backward. Backward, FA2's split: one block per (key tile, batch x kv head)
// keeps dK and dV of its tile in shared memory while it walks the query tiles of every query head of its group
// (so GQA needs no atomics for dK/dV), and adds each tile's dQ into an fp32 buffer with atomics.
//
//   forward, block (i, b*H+h):  for key tiles j <= i:  S = scale Q_i K_j^T -> online softmax -> O_i += P V_j
//   backward, block (j, b*Hkv+g): for heads h of group g, query tiles i >= j:
//        P = exp(S - lse)   dP = dO_i V_j^T   dS = P (dP - D)   dV_j += P^T dO_i   dK_j += dS^T Q_i   dQ_i += dS K_j
//
// Tile products run on tensor cores (nvcuda::wmma, bf16 in, fp32 accumulate, sm_80+) for bf16, and on CUDA cores in
// fp32 for float (the fp32 path exists to check the algorithm against the fp32 reference to 1e-5).
// Pitfalls: shared-memory tiles are staged through fp32 (S, O, dK, dV), which keeps the code short and readable but
// is slower than FA2's register-resident accumulators; see bench/cuda/attention_bench.cu for what it measures.
#pragma once

#include <mma.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "plait/kernels/attention.hpp"  // AttentionShape
#include "plait/kernels/device.cuh"

namespace plait::kernels::device {

// Rows of queries and keys per tile and warps per block. Chosen to fit shared memory on sm_80 (163 KiB) and sm_90
// (227 KiB) with head dim 128; not yet tuned on a GPU (no GPU was lent when this was written).
struct AttentionTiles {
  int queries;
  int keys;
  int warps;
};

template <class T, int HeadDim>
inline constexpr AttentionTiles attention_forward_tiles =
    std::is_same_v<T, bf16> ? AttentionTiles{64, 64, 8} : AttentionTiles{32, 32, 4};
template <class T, int HeadDim>
inline constexpr AttentionTiles attention_backward_tiles =
    std::is_same_v<T, bf16> ? AttentionTiles{32, 64, 8} : AttentionTiles{32, 32, 4};

// fp32 scratch that attention_backward needs: dQ accumulated in fp32 (B, T, H, hd), and D = rowsum(dO * O) (B, H, T).
inline std::int64_t attention_backward_workspace_floats(const AttentionShape& s) {
  return s.batch * s.seq * s.heads * s.head_dim + s.batch * s.heads * s.seq;
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

// D = rowsum(dO * O) per (b, h, t), one warp per row; the fp32 dQ accumulator is zeroed by the launcher.
template <class T, int HeadDim>
__global__ void attention_rowdot_kernel(AttentionShape s, const T* out, const T* dout, float* rowdot) {
  const std::int64_t rows = s.batch * s.seq * s.heads;
  const int lane = threadIdx.x % 32;
  for (std::int64_t row = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) / 32; row < rows;
       row += std::int64_t(gridDim.x) * blockDim.x / 32) {
    float sum = 0.0f;
    for (int d = lane; d < HeadDim; d += 32) sum += to_float(out[row * HeadDim + d]) * to_float(dout[row * HeadDim + d]);
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(~0u, sum, offset);
    // row = (b * T + t) * H + h  ->  (b, h, t)
    const std::int64_t h = row % s.heads, bt = row / s.heads, b = bt / s.seq, t = bt % s.seq;
    if (lane == 0) rowdot[(b * s.heads + h) * s.seq + t] = sum;
  }
}

template <class T, int HeadDim>
struct BackwardSmem {
  static constexpr AttentionTiles tiles = attention_backward_tiles<T, HeadDim>;
  static constexpr int rows = tiles.queries, cols = tiles.keys, threads = tiles.warps * 32;
  static constexpr int ldt = HeadDim + pad<T>, ldp = cols + pad<T>, lds = cols + 4, ldo = HeadDim + 4;
  static constexpr std::size_t k = 0;
  static constexpr std::size_t v = align128(k + sizeof(T) * cols * ldt);
  static constexpr std::size_t q = align128(v + sizeof(T) * cols * ldt);
  static constexpr std::size_t dout = align128(q + sizeof(T) * rows * ldt);
  static constexpr std::size_t s = align128(dout + sizeof(T) * rows * ldt);   // scores, fp32
  static constexpr std::size_t dp = align128(s + sizeof(float) * rows * lds);  // dO V^T, fp32
  static constexpr std::size_t p = align128(dp + sizeof(float) * rows * lds);  // P, T
  static constexpr std::size_t ds = align128(p + sizeof(T) * rows * ldp);      // dS, T
  static constexpr std::size_t dk = align128(ds + sizeof(T) * rows * ldp);     // fp32 accumulators of the key tile
  static constexpr std::size_t dv = align128(dk + sizeof(float) * cols * ldo);
  static constexpr std::size_t stats = align128(dv + sizeof(float) * cols * ldo);  // lse and D of the query tile
  // dS K of a query tile, fp32: in the score buffers when they are large enough (they are dead by then).
  static constexpr bool dq_in_scores = dp - s + sizeof(float) * rows * lds >= sizeof(float) * rows * ldo;
  static constexpr std::size_t dq = dq_in_scores ? s : align128(stats + sizeof(float) * 2 * rows);
  static constexpr std::size_t bytes =
      dq_in_scores ? stats + sizeof(float) * 2 * rows : dq + sizeof(float) * rows * ldo;
};

template <class T, int HeadDim>
__global__ void __launch_bounds__(BackwardSmem<T, HeadDim>::threads)
    attention_backward_kernel(AttentionShape s, const T* q, const T* k, const T* v, const float* lse, const T* dout,
                              const float* rowdot, float* dq_acc, T* dk, T* dv) {
  using L = BackwardSmem<T, HeadDim>;
  constexpr int Br = L::rows, Bc = L::cols, Threads = L::threads, Warps = L::tiles.warps;
  extern __shared__ __align__(128) unsigned char smem[];
  T* k_s = reinterpret_cast<T*>(smem + L::k);             // (Bc, hd)
  T* v_s = reinterpret_cast<T*>(smem + L::v);             // (Bc, hd)
  T* q_s = reinterpret_cast<T*>(smem + L::q);             // (Br, hd)
  T* do_s = reinterpret_cast<T*>(smem + L::dout);         // (Br, hd)
  float* s_s = reinterpret_cast<float*>(smem + L::s);     // (Br, Bc)
  float* dp_s = reinterpret_cast<float*>(smem + L::dp);   // (Br, Bc)
  T* p_s = reinterpret_cast<T*>(smem + L::p);             // (Br, Bc)
  T* ds_s = reinterpret_cast<T*>(smem + L::ds);           // (Br, Bc)
  float* dk_s = reinterpret_cast<float*>(smem + L::dk);   // (Bc, hd)
  float* dv_s = reinterpret_cast<float*>(smem + L::dv);   // (Bc, hd)
  float* lse_s = reinterpret_cast<float*>(smem + L::stats);
  float* rowdot_s = lse_s + Br;
  float* dq_s = reinterpret_cast<float*>(smem + L::dq);   // (Br, hd)

  // Key tile 0 meets every query tile: the first blocks carry the most work.
  const std::int64_t k0 = static_cast<std::int64_t>(blockIdx.x) * Bc;
  const std::int64_t b = blockIdx.y / s.kv_heads, kvh = blockIdx.y % s.kv_heads, group = s.heads / s.kv_heads;
  const std::int64_t q_stride = s.heads * HeadDim, kv_stride = s.kv_heads * HeadDim;
  const float scale = static_cast<float>(s.scale);

  load_tile<Bc, HeadDim, Threads>(k_s, L::ldt, k + b * s.seq * kv_stride + kvh * HeadDim, k0, s.seq, kv_stride);
  load_tile<Bc, HeadDim, Threads>(v_s, L::ldt, v + b * s.seq * kv_stride + kvh * HeadDim, k0, s.seq, kv_stride);
  for (int at = threadIdx.x; at < Bc * L::ldo; at += Threads) {
    dk_s[at] = 0.0f;
    dv_s[at] = 0.0f;
  }

  for (std::int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
    const T* q_base = q + b * s.seq * q_stride + h * HeadDim;
    const T* do_base = dout + b * s.seq * q_stride + h * HeadDim;
    const std::int64_t stats_base = (b * s.heads + h) * s.seq;
    // The first query tile that sees key k0 is the one holding query k0.
    for (std::int64_t q0 = k0 / Br * Br; q0 < s.seq; q0 += Br) {
      __syncthreads();  // the previous query tile is done with q_s, do_s, p_s, ds_s, dq_s
      load_tile<Br, HeadDim, Threads>(q_s, L::ldt, q_base, q0, s.seq, q_stride);
      load_tile<Br, HeadDim, Threads>(do_s, L::ldt, do_base, q0, s.seq, q_stride);
      for (int r = threadIdx.x; r < Br; r += Threads) {
        const bool inside = q0 + r < s.seq;
        lse_s[r] = inside ? lse[stats_base + q0 + r] : 0.0f;
        rowdot_s[r] = inside ? rowdot[stats_base + q0 + r] : 0.0f;
      }
      __syncthreads();
      tile_product<Br, Bc, HeadDim, Major::row, Major::col, false, Warps>(q_s, L::ldt, k_s, L::ldt, s_s, L::lds);
      tile_product<Br, Bc, HeadDim, Major::row, Major::col, false, Warps>(do_s, L::ldt, v_s, L::ldt, dp_s, L::lds);
      __syncthreads();
      for (int at = threadIdx.x; at < Br * Bc; at += Threads) {
        const int r = at / Bc, j = at % Bc;
        const std::int64_t query = q0 + r;
        const bool visible = k0 + j <= query && query < s.seq;
        const float p = visible ? exp_for<T>(s_s[r * L::lds + j] * scale - lse_s[r]) : 0.0f;
        const float ds = p * (dp_s[r * L::lds + j] - rowdot_s[r]);
        p_s[r * L::ldp + j] = from_float<T>(p);
        ds_s[r * L::ldp + j] = from_float<T>(ds);
      }
      __syncthreads();
      // dV += P^T dO, dK += dS^T Q (scaled once at the end), dQ_i = dS K: three independent products.
      tile_product<Bc, HeadDim, Br, Major::col, Major::row, true, Warps>(p_s, L::ldp, do_s, L::ldt, dv_s, L::ldo);
      tile_product<Bc, HeadDim, Br, Major::col, Major::row, true, Warps>(ds_s, L::ldp, q_s, L::ldt, dk_s, L::ldo);
      tile_product<Br, HeadDim, Bc, Major::row, Major::row, false, Warps>(ds_s, L::ldp, k_s, L::ldt, dq_s, L::ldo);
      __syncthreads();
      float* dq_base = dq_acc + b * s.seq * q_stride + h * HeadDim;
      for (int at = threadIdx.x; at < Br * HeadDim; at += Threads) {
        const int r = at / HeadDim, d = at % HeadDim;
        if (q0 + r < s.seq) atomicAdd(dq_base + (q0 + r) * q_stride + d, scale * dq_s[r * L::ldo + d]);
      }
    }
  }
  __syncthreads();

  T* dk_base = dk + b * s.seq * kv_stride + kvh * HeadDim;
  T* dv_base = dv + b * s.seq * kv_stride + kvh * HeadDim;
  for (int at = threadIdx.x; at < Bc * HeadDim; at += Threads) {
    const int j = at / HeadDim, d = at % HeadDim;
    if (k0 + j >= s.seq) continue;
    T* dk_at = dk_base + (k0 + j) * kv_stride + d;
    T* dv_at = dv_base + (k0 + j) * kv_stride + d;
    *dk_at = from_float<T>(to_float(*dk_at) + scale * dk_s[j * L::ldo + d]);
    *dv_at = from_float<T>(to_float(*dv_at) + dv_s[j * L::ldo + d]);
  }
}

// dq += dq_acc (the fp32 sums of every key tile's contribution).
template <class T>
__global__ void attention_dq_kernel(const float* dq_acc, std::int64_t n, T* dq) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    dq[i] = from_float<T>(to_float(dq[i]) + dq_acc[i]);
}

template <class Kernel>
cudaError_t allow_shared_memory(Kernel kernel, std::size_t bytes) {
  return bytes > 48 * 1024
             ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes))
             : cudaSuccess;
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline cudaError_t check_shape(const AttentionShape& s) {
  if (s.kv_heads <= 0 || s.heads % s.kv_heads != 0) return cudaErrorInvalidValue;  // equal groups per kv head
  if (s.head_dim != 64 && s.head_dim != 128) return cudaErrorInvalidValue;          // the instantiated head dims
  return cudaSuccess;
}

template <class T, int HeadDim>
cudaError_t attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v, T* out, float* lse,
                              cudaStream_t stream) {
  using L = ForwardSmem<T, HeadDim>;
  static_assert(L::bytes <= 163 * 1024, "the forward tiles must fit sm_80's 163 KiB of shared memory per block");
  auto kernel = attention_forward_kernel<T, HeadDim>;
  if (const cudaError_t e = allow_shared_memory(kernel, L::bytes); e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>(ceil_div(s.seq, L::rows)), static_cast<unsigned>(s.batch * s.heads));
  kernel<<<grid, L::threads, L::bytes, stream>>>(s, q, k, v, out, lse);
  return cudaGetLastError();
}

template <class T, int HeadDim>
cudaError_t attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v, const T* out,
                               const float* lse, const T* dout, T* dq, T* dk, T* dv, float* workspace,
                               cudaStream_t stream) {
  using L = BackwardSmem<T, HeadDim>;
  static_assert(L::bytes <= 163 * 1024, "the backward tiles must fit sm_80's 163 KiB of shared memory per block");
  const std::int64_t q_elements = s.batch * s.seq * s.heads * HeadDim;
  float* dq_acc = workspace;               // (B, T, H, hd)
  float* rowdot = workspace + q_elements;  // (B, H, T)
  if (const cudaError_t e = cudaMemsetAsync(dq_acc, 0, sizeof(float) * q_elements, stream); e != cudaSuccess) return e;
  attention_rowdot_kernel<T, HeadDim><<<elementwise_blocks(s.batch * s.seq * s.heads * 32, 256), 256, 0, stream>>>(
      s, out, dout, rowdot);
  auto kernel = attention_backward_kernel<T, HeadDim>;
  if (const cudaError_t e = allow_shared_memory(kernel, L::bytes); e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>(ceil_div(s.seq, L::cols)), static_cast<unsigned>(s.batch * s.kv_heads));
  kernel<<<grid, L::threads, L::bytes, stream>>>(s, q, k, v, lse, dout, rowdot, dq_acc, dk, dv);
  attention_dq_kernel<<<elementwise_blocks(q_elements, 256), 256, 0, stream>>>(dq_acc, q_elements, dq);
  return cudaGetLastError();
}

}  // namespace detail

// out = softmax(scale Q K^T, causal) V per head; lse (fp32) is the logsumexp of each row, for backward.
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
  return s.head_dim == 64 ? detail::attention_forward<T, 64>(s, q, k, v, out, lse, stream)
                          : detail::attention_forward<T, 128>(s, q, k, v, out, lse, stream);
}

// dq, dk, dv +=. workspace: attention_backward_workspace_floats(s) floats of device memory.
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
  return s.head_dim == 64
             ? detail::attention_backward<T, 64>(s, q, k, v, out, lse, dout, dq, dk, dv, workspace, stream)
             : detail::attention_backward<T, 128>(s, q, k, v, out, lse, dout, dq, dk, dv, workspace, stream);
}

}  // namespace plait::kernels::device
