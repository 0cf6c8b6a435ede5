// Tests of include/plait/backend/concepts.hpp: the Host backends model the Backend concept, and a backend lacking
// any one operation the layers call does not (so Transformer<Layout, B> refuses it at its entry).
#include <catch2/catch.hpp>

#include "plait/backend/concepts.hpp"
#include "plait/backend/host.hpp"

namespace {

// Host<float> but for one operation, hidden by an inheriting type that deletes it.
struct NoAttentionBackward : plait::Host<float> {
  static void attention_backward(...) = delete;
};
struct NoAdamW : plait::Host<float> {
  static void adamw_update(...) = delete;
};
struct NoGemm : plait::Host<float> {
  static void gemm(...) = delete;
};

}  // namespace

TEST_CASE("Host models Backend and a backend without one of the layers' operations does not", "[backend]") {
  STATIC_REQUIRE(plait::concepts::Backend<plait::Host<float>>);
  STATIC_REQUIRE(plait::concepts::Backend<plait::Host<double>>);
  STATIC_REQUIRE_FALSE(plait::concepts::Backend<NoAttentionBackward>);
  STATIC_REQUIRE_FALSE(plait::concepts::Backend<NoAdamW>);
  STATIC_REQUIRE_FALSE(plait::concepts::Backend<NoGemm>);
}
