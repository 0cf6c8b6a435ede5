// The model's tensors by name and by number, in the single-rank model's declaration order, whatever the layout:
//   0                  embedding
//   1 + 9 l + k        layers.<l>.<k-th name of a layer: attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down>
//   1 + 9 L            final_norm
//   2 + 9 L            lm_head (its number stays unused when the head is tied to the embedding)
// Checkpoints lay the full tensors out in this order, and gathering the parameters returns them in it.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "plait/core/error.hpp"

namespace plait::model {

// The tensors of one Transformer block, in declaration order: LayerTensor::wq is 1.
struct LayerTensor {
  enum Index : int { attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down };
};
inline constexpr int layer_tensor_count = 9;
inline constexpr std::array<std::string_view, layer_tensor_count> layer_tensor_names = {
    "attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_gate", "w_up", "w_down"};

class TensorTable {
 public:
  explicit TensorTable(std::int64_t layers) : layers_(layers) {}

  static std::string layer_tensor(std::int64_t layer, int which) {
    return "layers." + std::to_string(layer) + "." + std::string(layer_tensor_names[static_cast<std::size_t>(which)]);
  }

  std::int64_t count() const { return layer_tensor_count * layers_ + 3; }

  std::string name(std::int64_t code) const {
    PLAIT_CHECK(code >= 0 && code < count(), "tensor number ", code, " is outside 0..", count() - 1);
    if (code == 0) return "embedding";
    if (code == final_norm_code()) return "final_norm";
    if (code == final_norm_code() + 1) return "lm_head";
    return layer_tensor((code - 1) / layer_tensor_count, static_cast<int>((code - 1) % layer_tensor_count));
  }

  std::int64_t code(std::string_view name) const {
    if (name == "embedding") return 0;
    if (name == "final_norm") return final_norm_code();
    if (name == "lm_head") return final_norm_code() + 1;
    constexpr std::string_view prefix = "layers.";
    if (name.starts_with(prefix)) {
      const std::string_view rest = name.substr(prefix.size());
      std::int64_t layer = -1;
      const auto [end, error] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
      const std::size_t digits = static_cast<std::size_t>(end - rest.data());
      if (error == std::errc() && layer >= 0 && layer < layers_ && digits < rest.size() && rest[digits] == '.') {
        const std::string_view tensor = rest.substr(digits + 1);
        for (int k = 0; k < layer_tensor_count; ++k)
          if (tensor == layer_tensor_names[static_cast<std::size_t>(k)]) return 1 + layer_tensor_count * layer + k;
      }
    }
    core::fail("unknown tensor name '", name, "' for a model of ", layers_, " layers");
  }

 private:
  std::int64_t final_norm_code() const { return 1 + layer_tensor_count * layers_; }
  std::int64_t layers_;
};

}  // namespace plait::model
