// Cuda<T>: the GPU backend, for T = plait::bf16 (training) or float (checking kernels against the CPU references).
// The same static operations as Host<T> on device pointers: GEMMs through cuBLASLt (fp32 accumulate, bf16 or fp32 in),
// the layer operations through the fused kernels of kernels/*.cuh, elementwise work and reductions through Thrust on
// the CUDA system. Every call is queued on one stream per device (the backend's), and memory comes from a caching
// allocator that counts bytes by kind and keeps peaks in a core::MemoryTracker per device.
// Only nvcc compiles this header (it needs the toolkit's CCCL); g++ units talk to it through raw pointers.
//
// Pitfalls: blocks returned to the cache are reused by later work on the same stream, which is ordered after the work
// that used them; work on another stream must synchronize first. Under bf16, attention's lse is better kept in fp32
// (the float* overloads): a bf16 lse shifts every probability of a row by up to 1.6%.
#pragma once

#if !defined(__CUDACC__)
#error "plait/backend/cuda.hpp is compiled by nvcc only (a .cu unit linking plait::cuda)"
#endif

#include <cub/device/device_reduce.cuh>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <thrust/execution_policy.h>
#include <thrust/fill.h>
#include <thrust/functional.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <initializer_list>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plait/backend/concepts.hpp"
#include "plait/core/dtype.hpp"
#include "plait/core/error.hpp"
#include "plait/core/memory.hpp"
#include "plait/kernels/adamw.cuh"
#include "plait/kernels/attention.cuh"
#include "plait/kernels/blas.hpp"  // Trans
#include "plait/kernels/cross_entropy.cuh"
#include "plait/kernels/embedding.cuh"
#include "plait/kernels/rmsnorm.cuh"
#include "plait/kernels/rope.cuh"
#include "plait/kernels/swiglu.cuh"

// PLAIT_CUDA_CHECK(call): runs a CUDA runtime call (or a kernels/*.cuh launcher) and throws plait::Error naming it.
#define PLAIT_CUDA_CHECK(call)                                                                                  \
  do {                                                                                                          \
    const cudaError_t plait_cuda_status_ = (call);                                                              \
    if (plait_cuda_status_ != cudaSuccess)                                                                      \
      ::plait::core::fail("CUDA error in ", #call, " (", __FILE__, ":", __LINE__, "): ",                        \
                          cudaGetErrorName(plait_cuda_status_), ": ", cudaGetErrorString(plait_cuda_status_)); \
  } while (0)

// PLAIT_CUBLAS_CHECK(call): the same for cuBLASLt.
#define PLAIT_CUBLAS_CHECK(call)                                                                              \
  do {                                                                                                        \
    const cublasStatus_t plait_cublas_status_ = (call);                                                       \
    if (plait_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::plait::core::fail("cuBLASLt error in ", #call, " (", __FILE__, ":", __LINE__, "): ",                  \
                          cublasLtGetStatusName(plait_cublas_status_), ": ",                                  \
                          cublasLtGetStatusString(plait_cublas_status_));                                     \
  } while (0)

namespace plait::backend {

namespace cuda_detail {

inline int current_device() {
  int device = 0;
  PLAIT_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

// Device memory with a cache of freed blocks: a block freed is kept and handed to the next request of about its size
// (at most a quarter larger), so that a training step's thousands of temporaries cost no cudaMalloc after the first
// step. Bytes handed out are counted by kind in the device's MemoryTracker; bytes held from the driver (in use or
// cached) are counted as reserved.
class CachingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  ~CachingAllocator() { release_cached(); }

  void* allocate(std::size_t bytes, core::MemoryKind kind) {
    if (bytes == 0) return nullptr;
    const std::size_t size = round(bytes);
    void* block = nullptr;
    {
      std::lock_guard lock(mutex_);
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 4) {
        block = it->second;
        in_use_[block] = {it->first, bytes, kind};
        free_.erase(it);
      }
    }
    if (block == nullptr) {
      cudaError_t status = cudaMalloc(&block, size);
      if (status == cudaErrorMemoryAllocation) {  // give the cache back to the driver and try once more
        (void)cudaGetLastError();
        release_cached();
        status = cudaMalloc(&block, size);
      }
      if (status != cudaSuccess)
        core::fail("out of GPU memory on device ", device_, ": could not allocate ", size, " bytes for ",
                   core::name(kind), " (", reserved_, " bytes reserved, ", tracker_.current(), " in use): ",
                   cudaGetErrorString(status));
      std::lock_guard lock(mutex_);
      in_use_[block] = {size, bytes, kind};
      reserved_ += size;
      peak_reserved_ = reserved_ > peak_reserved_ ? reserved_ : peak_reserved_;
    }
    tracker_.on_allocate(kind, bytes);
    return block;
  }

  void free(void* block) {
    if (block == nullptr) return;
    std::lock_guard lock(mutex_);
    const auto it = in_use_.find(block);
    if (it == in_use_.end()) return;  // not ours: nothing sensible to do in a destructor
    tracker_.on_free(it->second.kind, it->second.requested);
    free_.emplace(it->second.size, block);
    in_use_.erase(it);
  }

  // Returns every cached (unused) block to the driver.
  void release_cached() {
    std::lock_guard lock(mutex_);
    for (auto& [size, block] : free_) {
      cudaFree(block);
      reserved_ -= size;
    }
    free_.clear();
  }

  core::MemoryTracker& tracker() { return tracker_; }
  std::size_t reserved() const { return reserved_; }
  std::size_t peak_reserved() const { return peak_reserved_; }

 private:
  struct Block {
    std::size_t size, requested;
    core::MemoryKind kind;
  };
  // 512-byte granules below 1 MiB, 2 MiB granules above (large activations come back at the same sizes every step).
  static std::size_t round(std::size_t bytes) {
    const std::size_t granule = bytes < (std::size_t(1) << 20) ? 512 : (std::size_t(2) << 20);
    return (bytes + granule - 1) / granule * granule;
  }

  int device_;
  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;
  std::map<void*, Block> in_use_;
  std::size_t reserved_ = 0, peak_reserved_ = 0;
  core::MemoryTracker tracker_;
};

// A GEMM's cuBLASLt descriptors and the algorithm its heuristic chose, built once per shape and kept: a training
// step runs the same few dozen shapes thousands of times, and building descriptors and asking the heuristic costs
// tens of microseconds each time. The key holds everything the choice depends on: transposes, sizes, leading
// dimensions, types and the pointers' alignment (told to the heuristic, so the algorithm never needs more).
struct GemmKey {
  int ta, tb;
  std::int64_t m, n, k, lda, ldb, ldc;
  int type, c_type, alignment;
  bool operator==(const GemmKey&) const = default;
};
struct GemmKeyHash {
  std::size_t operator()(const GemmKey& key) const {
    std::size_t h = 1469598103934665603ull;
    for (const std::int64_t v : {std::int64_t(key.ta), std::int64_t(key.tb), key.m, key.n, key.k, key.lda, key.ldb,
                                 key.ldc, std::int64_t(key.type), std::int64_t(key.c_type), std::int64_t(key.alignment)})
      h = (h ^ static_cast<std::size_t>(v)) * 1099511628211ull;
    return h;
  }
};
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  GemmPlan() = default;
  GemmPlan(const GemmPlan&) = delete;
  GemmPlan& operator=(const GemmPlan&) = delete;
  ~GemmPlan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

// The largest power of two (at most 256) that divides every pointer: what cuBLASLt may assume of them.
inline int common_alignment(std::initializer_list<const void*> pointers) {
  int alignment = 256;
  for (const void* p : pointers)
    while (alignment > 1 && reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(alignment) != 0)
      alignment /= 2;
  return alignment;
}

// Per device: the stream all of the backend's work goes to, the cuBLASLt handle, workspace and plans, the allocator.
struct DeviceContext {
  static constexpr std::size_t gemm_workspace_bytes = std::size_t(32) << 20;  // cuBLASLt's advice for sm_90

  explicit DeviceContext(int device) : allocator(device) {
    PLAIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    PLAIT_CUBLAS_CHECK(cublasLtCreate(&blas));
    PLAIT_CUDA_CHECK(cudaMalloc(&gemm_workspace, gemm_workspace_bytes));
  }
  ~DeviceContext() {
    cudaFree(gemm_workspace);
    cublasLtDestroy(blas);
    cudaStreamDestroy(stream);
  }
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  cudaStream_t stream = nullptr;
  cublasLtHandle_t blas = nullptr;
  void* gemm_workspace = nullptr;
  std::mutex gemm_mutex;
  std::unordered_map<GemmKey, std::unique_ptr<GemmPlan>, GemmKeyHash> gemm_plans;
  CachingAllocator allocator;
};

inline DeviceContext& context(int device) {
  static constexpr int max_devices = 64;
  static std::array<std::unique_ptr<DeviceContext>, max_devices> contexts;
  static std::mutex mutex;
  PLAIT_CHECK(device >= 0 && device < max_devices, "CUDA device ", device, " is beyond the ", max_devices, " supported");
  std::lock_guard lock(mutex);
  if (!contexts[device]) contexts[device] = std::make_unique<DeviceContext>(device);
  return *contexts[device];
}

inline DeviceContext& context() { return context(current_device()); }

template <class T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<core::bf16> {
  using type = __nv_bfloat16;
};
static_assert(sizeof(core::bf16) == sizeof(__nv_bfloat16) && alignof(core::bf16) == alignof(__nv_bfloat16),
              "plait::bf16 and __nv_bfloat16 must share their bits");

// Elementwise functors (named rather than lambdas, so users need no --extended-lambda).
template <class D>
struct AddTo {
  __host__ __device__ D operator()(D from, D to) const {
    return static_cast<D>(static_cast<float>(to) + static_cast<float>(from));
  }
};
template <class D>
struct ScaleBy {
  float factor;
  __host__ __device__ D operator()(D x) const { return static_cast<D>(static_cast<float>(x) * factor); }
};
template <class D>
struct Square {
  __host__ __device__ double operator()(D x) const {
    const double v = static_cast<float>(x);
    return v * v;
  }
};

}  // namespace cuda_detail

// The tracker of the current device: bytes in use by kind, and peaks.
inline core::MemoryTracker& cuda_memory() { return cuda_detail::context().allocator.tracker(); }

// An owning, zero-initialised device array of U from the caching allocator, counted under a MemoryKind.
template <class U>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t count, core::MemoryKind kind) : count_(count), kind_(kind), device_(cuda_detail::current_device()) {
    if (count_ == 0) return;
    auto& ctx = cuda_detail::context(device_);
    data_ = static_cast<U*>(ctx.allocator.allocate(count_ * sizeof(U), kind_));
    PLAIT_CUDA_CHECK(cudaMemsetAsync(data_, 0, count_ * sizeof(U), ctx.stream));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { swap(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    DeviceBuffer moved(std::move(other));
    swap(moved);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) cuda_detail::context(device_).allocator.free(data_);
  }

  U* data() { return data_; }
  const U* data() const { return data_; }
  std::size_t size() const { return count_; }
  core::MemoryKind kind() const { return kind_; }
  // No operator[], begin() or end(): device memory is reached through the backend (upload, download, kernels), so
  // model and training code that reads an element on the host does not compile for Cuda.

 private:
  void swap(DeviceBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    std::swap(kind_, other.kind_);
    std::swap(device_, other.device_);
  }

  U* data_ = nullptr;
  std::size_t count_ = 0;
  core::MemoryKind kind_ = core::MemoryKind::workspace;
  int device_ = 0;
};

template <class T>
struct Cuda {
  static_assert(std::is_same_v<T, core::bf16> || std::is_same_v<T, float>,
                "Cuda<T> runs in plait::bf16 (training) or float (checking against the CPU references)");
  using value_type = T;
  using master_type = float;  // optimizer moments and master weights
  using grad_type = float;    // gradients: accumulated and reduced in fp32
  using stat_type = float;    // row statistics, in fp32: RMSNorm's rstd, attention's lse, cross-entropy's max and sums
  template <class U>
  using Buffer = DeviceBuffer<U>;
  static constexpr const char* name = "cuda";

  using D = typename cuda_detail::DeviceType<T>::type;  // __nv_bfloat16 or float

  static core::MemoryTracker& memory() { return cuda_memory(); }
  static cudaStream_t stream() { return cuda_detail::context().stream; }
  static void synchronize() { PLAIT_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  // ---- transfers (synchronous): host data into the backend's buffers and back
  template <class U>
  static void upload(const U* host, U* device, std::int64_t n) {
    to_device(host, device, n);
  }
  template <class U>
  static void download(const U* device, U* host, std::int64_t n) {
    to_host(device, host, n);
  }
  template <class U>
  static void to_device(const U* host, U* device, std::int64_t n) {
    PLAIT_CUDA_CHECK(cudaMemcpyAsync(device, host, sizeof(U) * n, cudaMemcpyHostToDevice, stream()));
    synchronize();
  }
  template <class U>
  static void to_host(const U* device, U* host, std::int64_t n) {
    PLAIT_CUDA_CHECK(cudaMemcpyAsync(host, device, sizeof(U) * n, cudaMemcpyDeviceToHost, stream()));
    synchronize();
  }

  // ---- dense algebra: C = alpha op(A) op(B) + beta C, row-major, through cuBLASLt with fp32 accumulation.
  // Row-major C (m x n) is column-major C^T = op(B)^T op(A)^T: B and A swap places and keep their transposes.
  static void gemm(kernels::Trans ta, kernels::Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                   const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
    gemm_into(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  // The same into fp32 C: a weight gradient of a bf16 model.
  template <class U>
    requires(std::is_same_v<U, float> && !std::is_same_v<T, float>)
  static void gemm(kernels::Trans ta, kernels::Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                   const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, U* c, std::int64_t ldc) {
    gemm_into(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  template <class C>
  static void gemm_into(kernels::Trans ta, kernels::Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                        const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, C* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    auto& ctx = cuda_detail::context();
    constexpr cudaDataType_t type = std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
    constexpr cudaDataType_t c_type = std::is_same_v<C, float> ? CUDA_R_32F : CUDA_R_16BF;
    const cuda_detail::GemmKey key{ta == kernels::Trans::yes, tb == kernels::Trans::yes, m, n, k, lda, ldb, ldc,
                                   type, c_type, cuda_detail::common_alignment({a, b, c})};
    const cuda_detail::GemmPlan& plan = gemm_plan(ctx, key);
    const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
    PLAIT_CUBLAS_CHECK(cublasLtMatmul(ctx.blas, plan.desc, &alpha_f, b, plan.a, a, plan.b, &beta_f, c, plan.c, c,
                                      plan.c, &plan.algo, ctx.gemm_workspace,
                                      cuda_detail::DeviceContext::gemm_workspace_bytes, ctx.stream));
  }
  // The plan of `key`, built on first use: descriptors for row-major C = op(A) op(B) as column-major
  // C^T = op(B)^T op(A)^T, and the heuristic's first algorithm for them.
  static const cuda_detail::GemmPlan& gemm_plan(cuda_detail::DeviceContext& ctx, const cuda_detail::GemmKey& key) {
    std::lock_guard lock(ctx.gemm_mutex);
    auto& slot = ctx.gemm_plans[key];
    if (slot) return *slot;
    auto plan = std::make_unique<cuda_detail::GemmPlan>();
    const auto type = static_cast<cudaDataType_t>(key.type), c_type = static_cast<cudaDataType_t>(key.c_type);
    const cublasOperation_t op_a = key.tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's A is our B
    const cublasOperation_t op_b = key.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const std::int64_t m = key.m, n = key.n, k = key.k;
    PLAIT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    PLAIT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    PLAIT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    // Stored (column-major) shapes: our B is (n x k) or, transposed, (k x n); our A is (k x m) or (m x k).
    PLAIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, type, op_a == CUBLAS_OP_N ? n : k,
                                                  op_a == CUBLAS_OP_N ? k : n, key.ldb));
    PLAIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, type, op_b == CUBLAS_OP_N ? k : m,
                                                  op_b == CUBLAS_OP_N ? m : k, key.lda));
    PLAIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, c_type, n, m, key.ldc));
    cublasLtMatmulPreference_t preference = nullptr;
    PLAIT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    struct Release {
      cublasLtMatmulPreference_t p;
      ~Release() { cublasLtMatmulPreferenceDestroy(p); }
    } release{preference};
    const std::size_t workspace = cuda_detail::DeviceContext::gemm_workspace_bytes;
    const auto alignment = static_cast<std::uint32_t>(key.alignment);
    PLAIT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &workspace, sizeof(workspace)));
    for (const auto attribute : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                 CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      PLAIT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof(alignment)));
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    PLAIT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.blas, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                                      preference, 1, &heuristic, &found));
    PLAIT_CHECK(found > 0, "cuBLASLt has no algorithm for a ", m, " x ", n, " x ", k, " GEMM (alignment ",
                key.alignment, " bytes)");
    plan->algo = heuristic.algo;
    slot = std::move(plan);
    return *slot;
  }

  // ---- elementwise and reductions (Thrust, CUDA system, on the backend's stream)
  static void fill(T* x, std::int64_t n, double value) {
    thrust::fill(thrust::cuda::par_nosync.on(stream()), dev(x), dev(x) + n, static_cast<D>(static_cast<float>(value)));
    PLAIT_CUDA_CHECK(cudaGetLastError());
  }
  static void copy(const T* from, T* to, std::int64_t n) {
    PLAIT_CUDA_CHECK(cudaMemcpyAsync(to, from, sizeof(T) * n, cudaMemcpyDeviceToDevice, stream()));
  }
  // to += from
  static void add(const T* from, T* to, std::int64_t n) {
    thrust::transform(thrust::cuda::par_nosync.on(stream()), dev(from), dev(from) + n, dev(to), dev(to),
                      cuda_detail::AddTo<D>{});
    PLAIT_CUDA_CHECK(cudaGetLastError());
  }
  static void scale(T* x, std::int64_t n, double factor) {
    thrust::transform(thrust::cuda::par_nosync.on(stream()), dev(x), dev(x) + n, dev(x),
                      cuda_detail::ScaleBy<D>{static_cast<float>(factor)});
    PLAIT_CUDA_CHECK(cudaGetLastError());
  }
  static double sum_squares(const T* x, std::int64_t n) {  // synchronizes: the result comes back to the host
    return thrust::transform_reduce(thrust::cuda::par.on(stream()), dev(x), dev(x) + n, cuda_detail::Square<D>{}, 0.0,
                                    thrust::plus<double>());
  }
  // The gradients' (fp32) under bf16 (templates, so that under Cuda<float> they are not the functions above again).
  template <class U>
    requires(std::is_same_v<U, float> && !std::is_same_v<T, float>)
  static void fill(U* x, std::int64_t n, double value) {
    Cuda<float>::fill(x, n, value);
  }
  template <class U>
    requires(std::is_same_v<U, float> && !std::is_same_v<T, float>)
  static void copy(const U* from, U* to, std::int64_t n) {
    Cuda<float>::copy(from, to, n);
  }
  template <class U>
    requires(std::is_same_v<U, float> && !std::is_same_v<T, float>)
  static void add(const U* from, U* to, std::int64_t n) {
    Cuda<float>::add(from, to, n);
  }
  template <class U>
    requires(std::is_same_v<U, float> && !std::is_same_v<T, float>)
  static void scale(U* x, std::int64_t n, double factor) {
    Cuda<float>::scale(x, n, factor);
  }
  template <class U>
    requires(std::is_same_v<U, float> && !std::is_same_v<T, float>)
  static double sum_squares(const U* x, std::int64_t n) {
    return Cuda<float>::sum_squares(x, n);
  }

  // ---- layer operations: the kernels of kernels/*.cuh (backward passes accumulate into their outputs)
  static void embedding_forward(const std::int32_t* tokens, std::int64_t n, const T* table, std::int64_t vocab_begin,
                                std::int64_t vocab_rows, std::int64_t dim, T* out) {
    PLAIT_CUDA_CHECK(kernels::device::embedding_forward(tokens, n, dev(table), vocab_begin, vocab_rows, dim, dev(out),
                                                        stream()));
  }
  static void embedding_backward(const std::int32_t* tokens, std::int64_t n, const T* dout, std::int64_t vocab_begin,
                                 std::int64_t vocab_rows, std::int64_t dim, float* dtable) {
    std::size_t bytes = 0;
    PLAIT_CUDA_CHECK(kernels::device::embedding_backward_workspace_bytes(n, vocab_rows, &bytes));
    DeviceBuffer<unsigned char> workspace(bytes, core::MemoryKind::workspace);
    PLAIT_CUDA_CHECK(kernels::device::embedding_backward(tokens, n, dev(dout), vocab_begin, vocab_rows, dim, dtable,
                                                         workspace.data(), bytes, stream()));
  }
  static void rmsnorm_forward(const T* x, const T* weight, std::int64_t rows, std::int64_t dim, double eps, T* y,
                              float* rstd) {
    PLAIT_CUDA_CHECK(kernels::device::rmsnorm_forward(dev(x), dev(weight), rows, dim, eps, dev(y), rstd, stream()));
  }
  static void rmsnorm_backward(const T* x, const T* weight, const float* rstd, const T* dy, std::int64_t rows,
                               std::int64_t dim, T* dx, float* dweight) {
    DeviceBuffer<float> workspace(kernels::device::rmsnorm_backward_workspace_floats(rows, dim),
                                  core::MemoryKind::workspace);
    PLAIT_CUDA_CHECK(kernels::device::rmsnorm_backward(dev(x), dev(weight), rstd, dev(dy), rows, dim, dev(dx),
                                                       dweight, workspace.data(), stream()));
  }
  static void rope_forward(T* x, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                           std::int64_t position_offset, const kernels::RopeFrequencies& frequencies) {
    PLAIT_CUDA_CHECK(
        kernels::device::rope_forward(dev(x), batch, seq, heads, head_dim, position_offset, frequencies, stream()));
  }
  static void rope_backward(T* dx, std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                            std::int64_t position_offset, const kernels::RopeFrequencies& frequencies) {
    PLAIT_CUDA_CHECK(
        kernels::device::rope_backward(dev(dx), batch, seq, heads, head_dim, position_offset, frequencies, stream()));
  }

  // Attention with an fp32 lse (B, H, T): the form to use under bf16.
  static void attention_forward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, T* out,
                                float* lse) {
    PLAIT_CUDA_CHECK(kernels::device::attention_forward(s, dev(q), dev(k), dev(v), dev(out), lse, stream()));
  }
  static void attention_backward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, const T* out,
                                 const float* lse, const T* dout, T* dq, T* dk, T* dv) {
    DeviceBuffer<float> workspace(kernels::device::attention_backward_workspace_floats(s), core::MemoryKind::workspace);
    PLAIT_CUDA_CHECK(kernels::device::attention_backward(s, dev(q), dev(k), dev(v), dev(out), lse, dev(dout), dev(dq),
                                                         dev(dk), dev(dv), workspace.data(), stream()));
  }
  // Host<T>'s signature, lse in T: under bf16 the lse is rounded on the way out and widened on the way back in.
  static void attention_forward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* lse)
    requires(!std::is_same_v<T, float>)
  {
    const std::int64_t rows = s.batch * s.heads * s.seq;
    DeviceBuffer<float> lse32(rows, core::MemoryKind::workspace);
    attention_forward(s, q, k, v, out, lse32.data());
    PLAIT_CUDA_CHECK(kernels::device::convert(lse32.data(), dev(lse), rows, stream()));
  }
  static void attention_backward(const kernels::AttentionShape& s, const T* q, const T* k, const T* v, const T* out,
                                 const T* lse, const T* dout, T* dq, T* dk, T* dv)
    requires(!std::is_same_v<T, float>)
  {
    const std::int64_t rows = s.batch * s.heads * s.seq;
    DeviceBuffer<float> lse32(rows, core::MemoryKind::workspace);
    PLAIT_CUDA_CHECK(kernels::device::convert(dev(lse), lse32.data(), rows, stream()));
    attention_backward(s, q, k, v, out, lse32.data(), dout, dq, dk, dv);
  }

  static void swiglu_forward(const T* gate, const T* up, std::int64_t n, T* out) {
    PLAIT_CUDA_CHECK(kernels::device::swiglu_forward(dev(gate), dev(up), n, dev(out), stream()));
  }
  static void swiglu_backward(const T* gate, const T* up, const T* dout, std::int64_t n, T* dgate, T* dup) {
    PLAIT_CUDA_CHECK(kernels::device::swiglu_backward(dev(gate), dev(up), dev(dout), n, dev(dgate), dev(dup), stream()));
  }
  // The loss: row statistics and row losses in fp32 (stat_type).
  static void cross_entropy_row_max(const T* logits, std::int64_t rows, std::int64_t cols, float* row_max) {
    PLAIT_CUDA_CHECK(kernels::device::cross_entropy_row_max(dev(logits), rows, cols, row_max, stream()));
  }
  static void cross_entropy_sum_exp(const T* logits, const std::int32_t* targets, std::int64_t rows, std::int64_t cols,
                                    std::int64_t vocab_begin, const float* row_max, float* sum_exp,
                                    float* target_logit) {
    PLAIT_CUDA_CHECK(kernels::device::cross_entropy_sum_exp(dev(logits), targets, rows, cols, vocab_begin, row_max,
                                                            sum_exp, target_logit, stream()));
  }
  static void cross_entropy_grad_inplace(T* logits, const std::int32_t* targets, std::int64_t rows, std::int64_t cols,
                                         std::int64_t vocab_begin, const float* row_max, const float* sum_exp,
                                         double scale) {
    PLAIT_CUDA_CHECK(kernels::device::cross_entropy_grad_inplace(dev(logits), targets, rows, cols, vocab_begin, row_max,
                                                                 sum_exp, static_cast<float>(scale), stream()));
  }
  static void cross_entropy_row_loss(const std::int32_t* targets, std::int64_t rows, const float* row_max,
                                     const float* sum_exp, const float* target_logit, float* row_loss) {
    PLAIT_CUDA_CHECK(
        kernels::device::cross_entropy_row_loss(targets, rows, row_max, sum_exp, target_logit, row_loss, stream()));
  }
  static void sum_into(const T* x, std::int64_t n, double* total) {
    PLAIT_CUDA_CHECK(kernels::device::sum_into(dev(x), n, total, stream()));
  }
  template <class U>
    requires(std::is_same_v<U, float> && !std::is_same_v<T, float>)
  static void sum_into(const U* x, std::int64_t n, double* total) {
    PLAIT_CUDA_CHECK(kernels::device::sum_into(x, n, total, stream()));
  }
  // total (fp64, device memory) += the sum of squares of x (the gradients, fp32), with no host wait: CUB's device
  // reduction into a scratch value, then one add (deterministic run to run).
  template <class U>
    requires(std::is_same_v<U, float>)
  static void sum_squares_into(const U* x, std::int64_t n, double* total) {
    if (n == 0) return;
    DeviceBuffer<double> partial(1, core::MemoryKind::workspace);
    std::size_t bytes = 0;
    PLAIT_CUDA_CHECK(cub::DeviceReduce::TransformReduce(nullptr, bytes, x, partial.data(), n, cuda::std::plus<double>{},
                                                        cuda_detail::Square<float>{}, 0.0, stream()));
    DeviceBuffer<unsigned char> scratch(bytes, core::MemoryKind::workspace);
    PLAIT_CUDA_CHECK(cub::DeviceReduce::TransformReduce(scratch.data(), bytes, x, partial.data(), n,
                                                        cuda::std::plus<double>{}, cuda_detail::Square<float>{}, 0.0,
                                                        stream()));
    thrust::transform(thrust::cuda::par_nosync.on(stream()), partial.data(), partial.data() + 1, total, total,
                      thrust::plus<double>());
    PLAIT_CUDA_CHECK(cudaGetLastError());
  }
  static void cross_entropy_forward_backward(T* logits, const std::int32_t* targets, std::int64_t rows,
                                             std::int64_t vocab, double scale, float* row_loss) {
    PLAIT_CUDA_CHECK(kernels::device::cross_entropy_forward_backward(dev(logits), targets, rows, vocab,
                                                                     static_cast<float>(scale), row_loss, stream()));
  }

  // AdamW in place on the weights (T), fp32 moments: Host<T>'s signature with master_type = float.
  static void adamw_update(T* param, const T* grad, float* m, float* v, std::int64_t n, const kernels::AdamWStep& step) {
    PLAIT_CUDA_CHECK(kernels::device::adamw_update(dev(param), dev(grad), m, v, n, step, stream()));
  }
  // AdamW on fp32 master weights, writing the copy the layers read (weight may be null); gradients in T or fp32 (the
  // Trainer's, under bf16). Under Cuda<float> the masters are updated in place and copied.
  template <class U>
    requires(std::is_same_v<U, T> || std::is_same_v<U, float>)
  static void adamw_update(float* master, const U* grad, float* m, float* v, std::int64_t n,
                           const kernels::AdamWStep& step, T* weight) {
    if constexpr (std::is_same_v<T, float>) {
      adamw_update(master, grad, m, v, n, step);
      if (weight != nullptr) copy(master, weight, n);
    } else if constexpr (std::is_same_v<U, float>) {
      PLAIT_CUDA_CHECK(kernels::device::adamw_update(master, grad, m, v, n, step, stream(), dev(weight)));
    } else {
      PLAIT_CUDA_CHECK(kernels::device::adamw_update(master, dev(grad), m, v, n, step, stream(), dev(weight)));
    }
  }
  // Many tensors in a few launches (each tensor's own weight_decay applies).
  template <class P, class G>
  static void adamw_update(const kernels::device::AdamWTensor<P, G>* tensors, int count,
                           const kernels::AdamWStep& step) {
    PLAIT_CUDA_CHECK(kernels::device::adamw_update(tensors, count, step, stream()));
  }
  // The Trainer's mixed-precision step, every piece of every tensor in a few launches of the multi-tensor kernel:
  // fp32 masters and gradients, fp32 moments, the bf16 copy written. AdamWStep::weight_decay is not read (each piece
  // has its own).
  struct MasterUpdate {
    float* master;
    const float* grad;
    float* m;
    float* v;
    T* weight;
    std::int64_t n;
    double weight_decay;
  };
  static void adamw_update(const std::vector<MasterUpdate>& pieces, const kernels::AdamWStep& step)
    requires(!std::is_same_v<T, float>)
  {
    std::vector<kernels::device::AdamWTensor<float, float>> list;
    list.reserve(pieces.size());
    for (const MasterUpdate& u : pieces)
      list.push_back({u.master, u.grad, u.m, u.v, dev(u.weight), u.n, static_cast<float>(u.weight_decay)});
    if (!list.empty()) adamw_update(list.data(), static_cast<int>(list.size()), step);
  }

  // plait::bf16* <-> __nv_bfloat16* (same bits); float* stays float*.
  static D* dev(T* p) { return reinterpret_cast<D*>(p); }
  static const D* dev(const T* p) { return reinterpret_cast<const D*>(p); }
};

}  // namespace plait::backend

namespace plait {
using backend::Cuda;
using backend::DeviceBuffer;
}  // namespace plait
