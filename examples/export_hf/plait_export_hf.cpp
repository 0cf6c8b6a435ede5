// plait-export-hf: writes the parameters of a plait checkpoint directory (saved under any layout) as a Hugging Face
// LLaMA model, config.json + model.safetensors, that transformers' LlamaForCausalLM loads; plait-train
// --init-from-hf reads it back under any layout. One process, no MPI; holds one full tensor at a time.
#include <cstdio>
#include <exception>
#include <string>

#include "plait/train/hugging_face.hpp"

namespace {

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: plait-export-hf CKPT DIR [--dtype float32|bf16]\n\n"
               "Writes the parameters of the plait checkpoint CKPT (a directory plait-train --save wrote) as a Hugging "
               "Face\nLLaMA model in DIR: config.json and model.safetensors (LlamaForCausalLM's tensor names; q and k "
               "rows in its\nrotary order). --dtype: the weights' type (default float32: exact; bf16 rounds to nearest "
               "even).\nThe vocabulary is the tokenizer's: a padded model's padding rows are not written.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string checkpoint, dir, dtype = "float32";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    }
    if (arg == "--dtype" && i + 1 < argc) {
      dtype = argv[++i];
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "plait-export-hf: error: unknown flag '%s'\n", arg.c_str());
      usage(stderr);
      return 2;
    } else if (checkpoint.empty()) {
      checkpoint = arg;
    } else if (dir.empty()) {
      dir = arg;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (checkpoint.empty() || dir.empty()) {
    usage(stderr);
    return 2;
  }
  try {
    PLAIT_CHECK(dtype == "float32" || dtype == "bf16", "--dtype takes float32 or bf16, got '", dtype, "'");
    const auto as = dtype == "bf16" ? plait::train::SafetensorsDtype::BF16 : plait::train::SafetensorsDtype::F32;
    checkpoint = plait::train::resume_path(checkpoint);  // a --keep-last directory: its newest checkpoint
    const plait::train::HfExport e = plait::train::export_hugging_face(checkpoint, dir, as);
    const plait::ModelConfig& m = e.model;
    std::printf("plait-export-hf: %s (step %lld): %lld parameters, %lld layers, hidden %lld, heads %lld/%lld kv, "
                "ffn %lld, vocab %lld%s\n",
                checkpoint.c_str(), static_cast<long long>(e.step), static_cast<long long>(e.parameters),
                static_cast<long long>(m.layers), static_cast<long long>(m.hidden), static_cast<long long>(m.heads),
                static_cast<long long>(m.kv_heads), static_cast<long long>(m.ffn), static_cast<long long>(m.vocab),
                m.tied_embedding ? ", tied" : "");
    std::printf("wrote: %s/config.json and %s/model.safetensors (%lld tensors, %s, %lld bytes)\n", dir.c_str(),
                dir.c_str(), static_cast<long long>(e.tensors), dtype.c_str(), static_cast<long long>(e.bytes));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plait-export-hf: error: %s\n", e.what());
    return 2;
  }
}
