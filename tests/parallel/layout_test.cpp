// Layout<...>: policies in any order, defaults for what is left out. (Layouts that must not compile are in
// bad_layouts/, each checked for the sentence it prints.)
#include <catch2/catch.hpp>

#include <type_traits>

#include "plait/parallel/layout.hpp"

using namespace plait;

TEST_CASE("a layout fills in defaults and takes its policies in any order", "[parallel][layout]") {
  using Empty = Layout<>;
  STATIC_REQUIRE(Empty::tp::degree == 1);
  STATIC_REQUIRE(Empty::pp::stages == 1);
  STATIC_REQUIRE(std::is_same_v<Empty::pp::schedule, OneFOneB>);
  STATIC_REQUIRE(Empty::zero::stage == 0);
  STATIC_REQUIRE(std::is_same_v<Empty::checkpoint, parallel::None>);
  using A = Layout<TensorParallel<4, SequenceParallel>, Pipeline<2, Interleaved<2>>, ZeroStage<1>, Checkpoint<Selective>>;
  using B = Layout<Checkpoint<Selective>, ZeroStage<1>, Pipeline<2, Interleaved<2>>, TensorParallel<4, SequenceParallel>>;
  STATIC_REQUIRE(std::is_same_v<A::tp, B::tp>);
  STATIC_REQUIRE(std::is_same_v<A::pp, B::pp>);
  STATIC_REQUIRE(std::is_same_v<A::zero, B::zero>);
  STATIC_REQUIRE(std::is_same_v<A::checkpoint, B::checkpoint>);
  STATIC_REQUIRE(A::model_parallel == 8);
  STATIC_REQUIRE(A::tp::sequence_parallel);
}
