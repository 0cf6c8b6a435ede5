// Tests kernels/attention.hpp: the tiled forward (out and lse) and backward against a naive T x T attention written
// here, the backward against finite differences in fp64, float against the fp64 reference, GQA and MQA, sequence
// lengths that are not multiples of the tiles, accumulation, and a backward that does not depend on the thread count.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/gradcheck.hpp"
#include "plait/kernels/attention.hpp"

using namespace plait;
using kernels::AttentionShape;

namespace {

constexpr std::int64_t max_tile = kernels::AttentionTiles::queries;

AttentionShape shape(std::int64_t batch, std::int64_t seq, std::int64_t heads, std::int64_t kv_heads,
                     std::int64_t head_dim) {
  return {batch, seq, heads, kv_heads, head_dim, 1.0 / std::sqrt(static_cast<double>(head_dim))};
}

struct Inputs {
  std::vector<double> q, k, v;  // (B, T, H, hd), (B, T, Hkv, hd) x2
};

// Queries in [-2, 2] make the softmax far from uniform, so that the test sees real probabilities.
Inputs random_inputs(const AttentionShape& s, std::uint64_t seed) {
  const std::int64_t nq = s.batch * s.seq * s.heads * s.head_dim, nkv = s.batch * s.seq * s.kv_heads * s.head_dim;
  return {test::random_vector(nq, seed, -2.0, 2.0), test::random_vector(nkv, seed + 1),
          test::random_vector(nkv, seed + 2)};
}

// The textbook form: the full causal T x T probability matrix of one (batch, head), in fp64.
std::vector<double> naive_probs(const AttentionShape& s, const Inputs& in, std::int64_t b, std::int64_t h,
                                std::vector<double>* lse = nullptr) {
  const std::int64_t T = s.seq, hd = s.head_dim, kvh = h / (s.heads / s.kv_heads);
  std::vector<double> p(T * T, 0.0);
  for (std::int64_t i = 0; i < T; ++i) {
    const double* qi = &in.q[((b * T + i) * s.heads + h) * hd];
    double m = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j <= i; ++j) {
      const double* kj = &in.k[((b * T + j) * s.kv_heads + kvh) * hd];
      double score = 0.0;
      for (std::int64_t d = 0; d < hd; ++d) score += qi[d] * kj[d];
      p[i * T + j] = score * s.scale;
      m = std::max(m, p[i * T + j]);
    }
    double sum = 0.0;
    for (std::int64_t j = 0; j <= i; ++j) sum += std::exp(p[i * T + j] - m);
    for (std::int64_t j = 0; j <= i; ++j) p[i * T + j] = std::exp(p[i * T + j] - m) / sum;
    if (lse) (*lse)[(b * s.heads + h) * T + i] = m + std::log(sum);
  }
  return p;
}

void naive_forward(const AttentionShape& s, const Inputs& in, std::vector<double>& out, std::vector<double>& lse) {
  const std::int64_t T = s.seq, hd = s.head_dim;
  out.assign(s.batch * T * s.heads * hd, 0.0);
  lse.assign(s.batch * s.heads * T, 0.0);
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t kvh = h / (s.heads / s.kv_heads);
      const auto p = naive_probs(s, in, b, h, &lse);
      for (std::int64_t i = 0; i < T; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          for (std::int64_t d = 0; d < hd; ++d)
            out[((b * T + i) * s.heads + h) * hd + d] += p[i * T + j] * in.v[((b * T + j) * s.kv_heads + kvh) * hd + d];
    }
}

// dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale dS K, dK = scale dS^T Q; all +=.
void naive_backward(const AttentionShape& s, const Inputs& in, const std::vector<double>& dout,
                    std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv) {
  const std::int64_t T = s.seq, hd = s.head_dim;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t kvh = h / (s.heads / s.kv_heads);
      const auto p = naive_probs(s, in, b, h);
      const auto qi = [&](std::int64_t i) { return ((b * T + i) * s.heads + h) * hd; };
      const auto kj = [&](std::int64_t j) { return ((b * T + j) * s.kv_heads + kvh) * hd; };
      for (std::int64_t i = 0; i < T; ++i) {
        std::vector<double> dp(i + 1, 0.0);
        double p_dot_dp = 0.0;
        for (std::int64_t j = 0; j <= i; ++j) {
          for (std::int64_t d = 0; d < hd; ++d) {
            dp[j] += dout[qi(i) + d] * in.v[kj(j) + d];
            dv[kj(j) + d] += p[i * T + j] * dout[qi(i) + d];
          }
          p_dot_dp += p[i * T + j] * dp[j];
        }
        for (std::int64_t j = 0; j <= i; ++j) {
          const double ds = p[i * T + j] * (dp[j] - p_dot_dp) * s.scale;
          for (std::int64_t d = 0; d < hd; ++d) {
            dq[qi(i) + d] += ds * in.k[kj(j) + d];
            dk[kj(j) + d] += ds * in.q[qi(i) + d];
          }
        }
      }
    }
}

// The relative error ||a - ref|| / ||ref||; where the reference is exactly zero (dq and dk with one token: a single
// key gets probability 1 whatever the scores), ||a|| itself, which must then be rounding noise.
template <class A>
double error(const std::vector<A>& a, const std::vector<double>& ref) {
  double norm = 0.0;
  for (double r : ref) norm += r * r;
  return norm > 0.0 ? test::relative_error(a, ref) : std::sqrt(test::dot(a, a));
}

template <class T>
struct Result {
  std::vector<T> out, lse, dq, dk, dv;
};

template <class T>
Result<T> run_kernels(const AttentionShape& s, const Inputs& in, const std::vector<double>& dout) {
  const auto q = test::cast<T>(in.q), k = test::cast<T>(in.k), v = test::cast<T>(in.v), dO = test::cast<T>(dout);
  Result<T> r{std::vector<T>(q.size()), std::vector<T>(s.batch * s.heads * s.seq), std::vector<T>(q.size(), T(0)),
              std::vector<T>(k.size(), T(0)), std::vector<T>(v.size(), T(0))};
  kernels::attention_forward(s, q.data(), k.data(), v.data(), r.out.data(), r.lse.data());
  kernels::attention_backward(s, q.data(), k.data(), v.data(), r.out.data(), r.lse.data(), dO.data(), r.dq.data(),
                              r.dk.data(), r.dv.data());
  return r;
}

// MHA, GQA and MQA; one token, a sequence shorter than a tile, exactly a tile, and ones that end mid-tile.
const std::vector<AttentionShape> shapes = {
    shape(2, 13, 4, 2, 16),           shape(1, 2 * max_tile + 5, 4, 2, 8), shape(2, max_tile, 4, 1, 8),
    shape(1, 1, 3, 3, 16),            shape(2, max_tile + 1, 2, 2, 16),   shape(1, 3 * max_tile - 1, 6, 2, 8),
};

}  // namespace

TEST_CASE("attention forward and backward match naive T x T attention in fp64", "[kernels][attention]") {
  for (const auto& s : shapes) {
    INFO("B=" << s.batch << " T=" << s.seq << " H=" << s.heads << " Hkv=" << s.kv_heads << " hd=" << s.head_dim);
    const auto in = random_inputs(s, 200 + s.seq);
    const auto dout = test::random_vector(in.q.size(), 300 + s.seq);
    std::vector<double> out, lse, dq(in.q.size(), 0.0), dk(in.k.size(), 0.0), dv(in.v.size(), 0.0);
    naive_forward(s, in, out, lse);
    naive_backward(s, in, dout, dq, dk, dv);
    const auto r = run_kernels<double>(s, in, dout);
    CHECK(error(r.out, out) < 1e-12);
    CHECK(error(r.lse, lse) < 1e-12);
    CHECK(error(r.dq, dq) < 1e-12);
    CHECK(error(r.dk, dk) < 1e-12);
    CHECK(error(r.dv, dv) < 1e-12);
  }
}

TEST_CASE("attention in float agrees with the fp64 reference", "[kernels][attention]") {
  for (const auto& s : shapes) {
    INFO("B=" << s.batch << " T=" << s.seq << " H=" << s.heads << " Hkv=" << s.kv_heads << " hd=" << s.head_dim);
    const auto in = random_inputs(s, 400 + s.seq);
    const auto dout = test::random_vector(in.q.size(), 500 + s.seq);
    std::vector<double> out, lse, dq(in.q.size(), 0.0), dk(in.k.size(), 0.0), dv(in.v.size(), 0.0);
    naive_forward(s, in, out, lse);
    naive_backward(s, in, dout, dq, dk, dv);
    const auto r = run_kernels<float>(s, in, dout);
    CHECK(error(r.out, out) < 1e-5);
    CHECK(error(r.lse, lse) < 1e-5);
    CHECK(error(r.dq, dq) < 1e-5);
    CHECK(error(r.dk, dk) < 1e-5);
    CHECK(error(r.dv, dv) < 1e-5);
  }
}

TEST_CASE("attention backward matches finite differences of sum(out R) for q and k and v", "[kernels][attention]") {
  // GQA with head_dim 16 inside one tile, and head_dim 8 across two tiles of queries and of keys.
  const auto s = GENERATE(shape(2, 13, 4, 2, 16), shape(1, max_tile + 7, 4, 2, 8));
  INFO("B=" << s.batch << " T=" << s.seq << " H=" << s.heads << " Hkv=" << s.kv_heads << " hd=" << s.head_dim);
  auto in = random_inputs(s, 600);
  const auto projection = test::random_vector(in.q.size(), 601);
  std::vector<double> out(in.q.size()), lse(s.batch * s.heads * s.seq);
  const auto loss = [&] {
    kernels::attention_forward(s, in.q.data(), in.k.data(), in.v.data(), out.data(), lse.data());
    return test::dot(out, projection);
  };
  loss();
  std::vector<double> dq(in.q.size(), 0.0), dk(in.k.size(), 0.0), dv(in.v.size(), 0.0);
  kernels::attention_backward(s, in.q.data(), in.k.data(), in.v.data(), out.data(), lse.data(), projection.data(),
                              dq.data(), dk.data(), dv.data());
  CHECK(test::relative_error(dq, test::numeric_gradient(in.q, loss)) < 1e-6);
  CHECK(test::relative_error(dk, test::numeric_gradient(in.k, loss)) < 1e-6);
  CHECK(test::relative_error(dv, test::numeric_gradient(in.v, loss)) < 1e-6);
}

TEST_CASE("attention backward accumulates and is bitwise the same on 1 and 3 threads", "[kernels][attention]") {
  const auto s = shape(2, 2 * max_tile + 9, 4, 2, 16);
  const auto in = random_inputs(s, 700);
  const auto q = test::cast<float>(in.q), k = test::cast<float>(in.k), v = test::cast<float>(in.v);
  const auto dout = test::cast<float>(test::random_vector(q.size(), 701));
  std::vector<float> out(q.size()), lse(s.batch * s.heads * s.seq);
  kernels::attention_forward(s, q.data(), k.data(), v.data(), out.data(), lse.data());

  const auto backward = [&](int threads, float start) {
    Result<float> r{{}, {}, std::vector<float>(q.size(), start), std::vector<float>(k.size(), start),
                    std::vector<float>(v.size(), start)};
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    kernels::attention_backward(s, q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), r.dq.data(),
                                r.dk.data(), r.dv.data());
    omp_set_num_threads(saved);
    return r;
  };
  const auto one = backward(1, 0.0f), three = backward(3, 0.0f);
  REQUIRE(one.dq == three.dq);
  REQUIRE(one.dk == three.dk);
  REQUIRE(one.dv == three.dv);

  // Callers zero the gradients; a non-zero start must be added to. Adding 1 in float rounds to ~1e-7 absolute.
  const auto offset = backward(2, 1.0f);
  for (std::size_t i = 0; i < q.size(); ++i) REQUIRE(offset.dq[i] == Approx(one.dq[i] + 1.0f).margin(1e-6));
  for (std::size_t i = 0; i < k.size(); ++i) REQUIRE(offset.dk[i] == Approx(one.dk[i] + 1.0f).margin(1e-6));
  for (std::size_t i = 0; i < v.size(); ++i) REQUIRE(offset.dv[i] == Approx(one.dv[i] + 1.0f).margin(1e-6));
}
