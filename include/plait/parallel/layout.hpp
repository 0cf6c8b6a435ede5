// Layout<Policies...>: gathers the parallelization policies in any order, fills in defaults for those left out
// (TensorParallel<1>, Pipeline<1, OneFOneB>, ZeroStage<0>, Checkpoint<None>), rejects duplicates, and checks the
// combinations in one place. The data-parallel degree is what is left of the world: world / (TP x PP).
#pragma once

#include <type_traits>

#include "plait/parallel/checkpoint.hpp"
#include "plait/parallel/pipeline.hpp"
#include "plait/parallel/tensor_parallel.hpp"
#include "plait/parallel/zero.hpp"

namespace plait::parallel {

namespace detail {
template <class T> struct is_tp : std::false_type {};
template <int N, class SP> struct is_tp<TensorParallel<N, SP>> : std::true_type {};
template <class T> struct is_pp : std::false_type {};
template <int S, class Sched> struct is_pp<Pipeline<S, Sched>> : std::true_type {};
template <class T> struct is_zero : std::false_type {};
template <int K> struct is_zero<ZeroStage<K>> : std::true_type {};
template <class T> struct is_ckpt : std::false_type {};
template <class P> struct is_ckpt<Checkpoint<P>> : std::true_type {};

template <template <class> class Is, class... Ps>
constexpr int count = (0 + ... + (Is<Ps>::value ? 1 : 0));

// The first policy Is<> recognises, or Default.
template <template <class> class Is, class Default, class... Ps>
struct pick {
  using type = Default;
};
template <template <class> class Is, class Default, class P, class... Ps>
struct pick<Is, Default, P, Ps...> {
  using type = std::conditional_t<Is<P>::value, P, typename pick<Is, Default, Ps...>::type>;
};
}  // namespace detail

template <class... Policies>
struct Layout {
  static_assert(((detail::is_tp<Policies>::value || detail::is_pp<Policies>::value ||
                  detail::is_zero<Policies>::value || detail::is_ckpt<Policies>::value) && ...),
                "Layout<...> takes only TensorParallel, Pipeline, ZeroStage and Checkpoint policies.");
  static_assert(detail::count<detail::is_tp, Policies...> <= 1, "Layout<...> was given TensorParallel twice: keep one.");
  static_assert(detail::count<detail::is_pp, Policies...> <= 1, "Layout<...> was given Pipeline twice: keep one.");
  static_assert(detail::count<detail::is_zero, Policies...> <= 1, "Layout<...> was given ZeroStage twice: keep one.");
  static_assert(detail::count<detail::is_ckpt, Policies...> <= 1, "Layout<...> was given Checkpoint twice: keep one.");

  using tp = typename detail::pick<detail::is_tp, TensorParallel<1>, Policies...>::type;
  using pp = typename detail::pick<detail::is_pp, Pipeline<1, OneFOneB>, Policies...>::type;
  using zero = typename detail::pick<detail::is_zero, ZeroStage<0>, Policies...>::type;
  using checkpoint = typename detail::pick<detail::is_ckpt, Checkpoint<None>, Policies...>::type::policy;

  static_assert(pp::stages > 1 || pp::schedule::virtual_stages == 1,
                "Interleaved<V> spreads V model chunks over the pipeline stages: it needs Pipeline<S, ...> with S > 1 "
                "(use OneFOneB, or more stages).");

  static constexpr int model_parallel = tp::degree * pp::stages;
  static constexpr bool single_rank_model = model_parallel == 1;
};

// The reference every other layout is tested against: every degree 1.
using SingleDevice = Layout<>;

}  // namespace plait::parallel

namespace plait {
using parallel::Checkpoint;
using parallel::EveryNth;
using parallel::Full;
using parallel::GPipe;
using parallel::Interleaved;
using parallel::Layout;
using parallel::NoSequenceParallel;
using parallel::OneFOneB;
using parallel::Pipeline;
using parallel::Selective;
using parallel::SequenceParallel;
using parallel::SingleDevice;
using parallel::TensorParallel;
using parallel::ZeroBubble;
using parallel::ZeroStage;
}  // namespace plait
