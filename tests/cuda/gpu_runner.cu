// The GPU half of the CUDA tests (see gpu_runner.hpp): each function runs one operation of Cuda<float> or
// Cuda<plait::bf16> on data uploaded from the host. Including cuda.hpp first also checks that it compiles alone.
#include "plait/backend/cuda.hpp"

#include <utility>

#include "gpu_runner.hpp"

namespace plait::cuda_test {

static_assert(concepts::Backend<Cuda<float>>, "Cuda<float> must be a plait Backend");
static_assert(concepts::Backend<Cuda<bf16>>, "Cuda<bf16> must be a plait Backend");

namespace {

template <class F>
void with_type(Precision p, F&& f) {
  if (p == Precision::fp32) {
    f.template operator()<float>();
  } else {
    f.template operator()<bf16>();
  }
}

template <class T>
DeviceBuffer<T> upload(const Floats& host) {
  std::vector<T> converted(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) converted[i] = static_cast<T>(host[i]);
  DeviceBuffer<T> device(host.size(), MemoryKind::workspace);
  if (!host.empty()) Cuda<float>::to_device(converted.data(), device.data(), static_cast<std::int64_t>(host.size()));
  return device;
}

template <class T>
void download(const DeviceBuffer<T>& device, Floats& host) {
  std::vector<T> converted(device.size());
  if (!converted.empty()) Cuda<float>::to_host(device.data(), converted.data(), static_cast<std::int64_t>(device.size()));
  host.resize(device.size());
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(converted[i]);
}

DeviceBuffer<std::int32_t> upload_tokens(const Tokens& tokens) {
  DeviceBuffer<std::int32_t> device(tokens.size(), MemoryKind::workspace);
  if (!tokens.empty()) Cuda<float>::to_device(tokens.data(), device.data(), static_cast<std::int64_t>(tokens.size()));
  return device;
}

std::int64_t size(const Floats& x) { return static_cast<std::int64_t>(x.size()); }

}  // namespace

std::string no_device_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess)
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(status) + ": " + cudaGetErrorString(status);
  if (count == 0) return "cudaGetDeviceCount reports 0 devices";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "cudaGetDeviceProperties failed on device 0";
  if (prop.major < 8)
    return std::string("device 0 (") + prop.name + ") is sm_" + std::to_string(prop.major * 10 + prop.minor) +
           "; the bf16 kernels need sm_80 or newer";
  return "";
}

void fail_a_cuda_call() { PLAIT_CUDA_CHECK(cudaFree(reinterpret_cast<void*>(std::uintptr_t{1}))); }

void gemm(Precision p, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const Floats& a,
          std::int64_t lda, const Floats& b, std::int64_t ldb, float beta, Floats& c, std::int64_t ldc) {
  with_type(p, [&]<class T>() {
    auto da = upload<T>(a), db = upload<T>(b), dc = upload<T>(c);
    Cuda<T>::gemm(ta ? kernels::Trans::yes : kernels::Trans::no, tb ? kernels::Trans::yes : kernels::Trans::no, m, n,
                  k, static_cast<T>(alpha), da.data(), lda, db.data(), ldb, static_cast<T>(beta), dc.data(), ldc);
    download(dc, c);
  });
}

double elementwise(Precision p, const Floats& from, Floats& x, double value, double factor) {
  double result = 0.0;
  with_type(p, [&]<class T>() {
    auto dfrom = upload<T>(from), dx = upload<T>(x);
    Cuda<T>::fill(dx.data(), size(x), value);
    Cuda<T>::scale(dx.data(), size(x), factor);
    Cuda<T>::add(dfrom.data(), dx.data(), size(x));
    DeviceBuffer<T> copied(x.size(), MemoryKind::workspace);
    Cuda<T>::copy(dx.data(), copied.data(), size(x));
    result = Cuda<T>::sum_squares(copied.data(), size(x));
    download(copied, x);
  });
  return result;
}

std::int64_t allocator_peak(std::int64_t bytes_a, std::int64_t bytes_b, bool& reused) {
  auto& allocator = backend::cuda_detail::context().allocator;
  Cuda<float>::synchronize();
  allocator.tracker().reset_peaks();
  const std::int64_t before = allocator.tracker().current(MemoryKind::activations);
  {
    DeviceBuffer<unsigned char> a(bytes_a, MemoryKind::activations);
    DeviceBuffer<unsigned char> b(bytes_b, MemoryKind::activations);
  }
  const std::size_t reserved = allocator.reserved();
  { DeviceBuffer<unsigned char> again(bytes_a, MemoryKind::activations); }
  reused = allocator.reserved() == reserved;
  Cuda<float>::synchronize();
  return allocator.tracker().peak(MemoryKind::activations) - before;
}

void embedding_forward(Precision p, const Tokens& tokens, const Floats& table, std::int64_t vocab_begin,
                       std::int64_t vocab_rows, std::int64_t dim, Floats& out) {
  with_type(p, [&]<class T>() {
    auto dt = upload_tokens(tokens);
    auto dtable = upload<T>(table), dout = upload<T>(out);
    Cuda<T>::embedding_forward(dt.data(), static_cast<std::int64_t>(tokens.size()), dtable.data(), vocab_begin,
                               vocab_rows, dim, dout.data());
    download(dout, out);
  });
}

void embedding_backward(Precision p, const Tokens& tokens, const Floats& dout, std::int64_t vocab_begin,
                        std::int64_t vocab_rows, std::int64_t dim, Floats& dtable) {
  with_type(p, [&]<class T>() {
    auto dt = upload_tokens(tokens);
    auto ddout = upload<T>(dout);
    auto ddtable = upload<float>(dtable);  // gradients are fp32
    Cuda<T>::embedding_backward(dt.data(), static_cast<std::int64_t>(tokens.size()), ddout.data(), vocab_begin,
                                vocab_rows, dim, ddtable.data());
    download(ddtable, dtable);
  });
}

void rmsnorm_forward(Precision p, const Floats& x, const Floats& weight, std::int64_t rows, std::int64_t dim,
                     double eps, Floats& y, Floats& rstd) {
  with_type(p, [&]<class T>() {
    auto dx = upload<T>(x), dw = upload<T>(weight), dy = upload<T>(y);
    auto dr = upload<float>(rstd);  // row statistics are fp32
    Cuda<T>::rmsnorm_forward(dx.data(), dw.data(), rows, dim, eps, dy.data(), dr.data());
    download(dy, y);
    download(dr, rstd);
  });
}

void rmsnorm_backward(Precision p, const Floats& x, const Floats& weight, const Floats& rstd, const Floats& dy,
                      std::int64_t rows, std::int64_t dim, Floats& dx, Floats& dweight) {
  with_type(p, [&]<class T>() {
    auto d_x = upload<T>(x), d_w = upload<T>(weight), d_dy = upload<T>(dy);
    auto d_r = upload<float>(rstd);
    auto d_dx = upload<T>(dx);
    auto d_dw = upload<float>(dweight);  // gradients are fp32
    Cuda<T>::rmsnorm_backward(d_x.data(), d_w.data(), d_r.data(), d_dy.data(), rows, dim, d_dx.data(), d_dw.data());
    download(d_dx, dx);
    download(d_dw, dweight);
  });
}

void rope(Precision p, bool forward, Floats& x, std::int64_t batch, std::int64_t seq, std::int64_t heads,
          std::int64_t head_dim, std::int64_t position_offset, const kernels::RopeFrequencies& frequencies) {
  with_type(p, [&]<class T>() {
    auto dx = upload<T>(x);
    if (forward) {
      Cuda<T>::rope_forward(dx.data(), batch, seq, heads, head_dim, position_offset, frequencies);
    } else {
      Cuda<T>::rope_backward(dx.data(), batch, seq, heads, head_dim, position_offset, frequencies);
    }
    download(dx, x);
  });
}

void attention_forward(Precision p, const kernels::AttentionShape& s, const Floats& q, const Floats& k,
                       const Floats& v, Floats& out, Floats& lse) {
  with_type(p, [&]<class T>() {
    auto dq = upload<T>(q), dk = upload<T>(k), dv = upload<T>(v), dout = upload<T>(out);
    auto dlse = upload<float>(lse);
    Cuda<T>::attention_forward(s, dq.data(), dk.data(), dv.data(), dout.data(), dlse.data());
    download(dout, out);
    download(dlse, lse);
  });
}

void attention_backward(Precision p, const kernels::AttentionShape& s, const Floats& q, const Floats& k,
                        const Floats& v, const Floats& out, const Floats& lse, const Floats& dout, Floats& dq,
                        Floats& dk, Floats& dv) {
  with_type(p, [&]<class T>() {
    auto d_q = upload<T>(q), d_k = upload<T>(k), d_v = upload<T>(v), d_out = upload<T>(out), d_do = upload<T>(dout);
    auto d_lse = upload<float>(lse);
    auto d_dq = upload<T>(dq), d_dk = upload<T>(dk), d_dv = upload<T>(dv);
    Cuda<T>::attention_backward(s, d_q.data(), d_k.data(), d_v.data(), d_out.data(), d_lse.data(), d_do.data(),
                                d_dq.data(), d_dk.data(), d_dv.data());
    download(d_dq, dq);
    download(d_dk, dk);
    download(d_dv, dv);
  });
}

void swiglu_forward(Precision p, const Floats& gate, const Floats& up, Floats& out) {
  with_type(p, [&]<class T>() {
    auto dg = upload<T>(gate), du = upload<T>(up), dout = upload<T>(out);
    Cuda<T>::swiglu_forward(dg.data(), du.data(), size(gate), dout.data());
    download(dout, out);
  });
}

void swiglu_backward(Precision p, const Floats& gate, const Floats& up, const Floats& dout, Floats& dgate,
                     Floats& dup) {
  with_type(p, [&]<class T>() {
    auto dg = upload<T>(gate), du = upload<T>(up), ddout = upload<T>(dout), ddg = upload<T>(dgate),
         ddu = upload<T>(dup);
    Cuda<T>::swiglu_backward(dg.data(), du.data(), ddout.data(), size(gate), ddg.data(), ddu.data());
    download(ddg, dgate);
    download(ddu, dup);
  });
}

void cross_entropy_row_max(Precision p, const Floats& logits, std::int64_t rows, std::int64_t cols, Floats& row_max) {
  with_type(p, [&]<class T>() {
    auto dl = upload<T>(logits);
    auto dm = upload<float>(row_max);
    Cuda<T>::cross_entropy_row_max(dl.data(), rows, cols, dm.data());
    download(dm, row_max);
  });
}

void cross_entropy_sum_exp(Precision p, const Floats& logits, const Tokens& targets, std::int64_t rows,
                           std::int64_t cols, std::int64_t vocab_begin, const Floats& row_max, Floats& sum_exp,
                           Floats& target_logit) {
  with_type(p, [&]<class T>() {
    auto dl = upload<T>(logits);
    auto dm = upload<float>(row_max), ds = upload<float>(sum_exp), dtl = upload<float>(target_logit);
    auto dt = upload_tokens(targets);
    Cuda<T>::cross_entropy_sum_exp(dl.data(), dt.data(), rows, cols, vocab_begin, dm.data(), ds.data(), dtl.data());
    download(ds, sum_exp);
    download(dtl, target_logit);
  });
}

void cross_entropy_grad_inplace(Precision p, Floats& logits, const Tokens& targets, std::int64_t rows,
                                std::int64_t cols, std::int64_t vocab_begin, const Floats& row_max,
                                const Floats& sum_exp, double scale) {
  with_type(p, [&]<class T>() {
    auto dl = upload<T>(logits);
    auto dm = upload<float>(row_max), ds = upload<float>(sum_exp);
    auto dt = upload_tokens(targets);
    Cuda<T>::cross_entropy_grad_inplace(dl.data(), dt.data(), rows, cols, vocab_begin, dm.data(), ds.data(), scale);
    download(dl, logits);
  });
}

void cross_entropy_row_loss(Precision p, const Tokens& targets, std::int64_t rows, const Floats& row_max,
                            const Floats& sum_exp, const Floats& target_logit, Floats& row_loss) {
  with_type(p, [&]<class T>() {
    auto dm = upload<float>(row_max), ds = upload<float>(sum_exp), dtl = upload<float>(target_logit),
         dl = upload<float>(row_loss);
    auto dt = upload_tokens(targets);
    Cuda<T>::cross_entropy_row_loss(dt.data(), rows, dm.data(), ds.data(), dtl.data(), dl.data());
    download(dl, row_loss);
  });
}

void sum_into(Precision p, const Floats& x, double& total) {
  with_type(p, [&]<class T>() {
    auto dx = upload<T>(x);
    DeviceBuffer<double> dt(1, MemoryKind::workspace);
    Cuda<T>::upload(&total, dt.data(), 1);
    Cuda<T>::sum_into(dx.data(), size(x), dt.data());
    Cuda<T>::download(dt.data(), &total, 1);
  });
}

void cross_entropy_forward_backward(Precision p, Floats& logits, const Tokens& targets, std::int64_t rows,
                                    std::int64_t vocab, double scale, Floats& row_loss) {
  with_type(p, [&]<class T>() {
    auto dl = upload<T>(logits);
    auto dloss = upload<float>(row_loss);
    auto dt = upload_tokens(targets);
    Cuda<T>::cross_entropy_forward_backward(dl.data(), dt.data(), rows, vocab, scale, dloss.data());
    download(dl, logits);
    download(dloss, row_loss);
  });
}

void adamw_update(Precision p, Floats& param, const Floats& grad, Floats& m, Floats& v, const kernels::AdamWStep& s) {
  with_type(p, [&]<class T>() {
    auto dp = upload<T>(param), dg = upload<T>(grad);
    auto dm = upload<float>(m), dv = upload<float>(v);
    Cuda<T>::adamw_update(dp.data(), dg.data(), dm.data(), dv.data(), size(param), s);
    download(dp, param);
    download(dm, m);
    download(dv, v);
  });
}

void adamw_update_multi(Precision grad_precision, std::vector<AdamWTensorData>& tensors, const kernels::AdamWStep& s) {
  with_type(grad_precision, [&]<class T>() {
    using D = typename Cuda<T>::D;
    struct OnDevice {
      DeviceBuffer<float> master;
      DeviceBuffer<T> grad;
      DeviceBuffer<float> m, v;
      DeviceBuffer<bf16> weight;
    };
    std::vector<OnDevice> device;
    std::vector<kernels::device::AdamWTensor<float, D>> list;
    for (auto& t : tensors) {
      device.push_back({upload<float>(t.master), upload<T>(t.grad), upload<float>(t.m), upload<float>(t.v),
                        upload<bf16>(t.weight)});
      auto& d = device.back();
      list.push_back({d.master.data(), Cuda<T>::dev(d.grad.data()), d.m.data(), d.v.data(),
                      reinterpret_cast<__nv_bfloat16*>(d.weight.data()), static_cast<std::int64_t>(t.master.size()),
                      t.weight_decay});
    }
    Cuda<T>::adamw_update(list.data(), static_cast<int>(list.size()), s);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      download(device[i].master, tensors[i].master);
      download(device[i].m, tensors[i].m);
      download(device[i].v, tensors[i].v);
      download(device[i].weight, tensors[i].weight);
    }
  });
}

}  // namespace plait::cuda_test
