#!/usr/bin/env python3
"""The peer plait's training step is compared with: the same LLaMA-style model in PyTorch (Hugging Face's
LlamaForCausalLM: RMSNorm, rotary embeddings, grouped-query attention through scaled_dot_product_attention, SwiGLU,
untied embedding and LM head, no biases), the same batch shape, AdamW with the same settings and gradient clipping
at 1.0, on random tokens. On a GPU it runs in bf16 mixed precision (fp32 weights and optimizer state, bf16 autocast:
the same bytes per parameter as plait's Cuda<bf16>), eager or through torch.compile; on the CPU in fp32, eager.

Prints one line that bench/README.md and scripts/gpu-check.sh read:
    torch mode=eager device=cuda params=... tokens_per_step=... step_ms=... tokens_per_s=... mfu=...
MFU by plait's formula (6N + 12 L H Q T per token, model/config.hpp) against --peak-tflops (default 989, the dense
bf16 peak of H100/H200 SXM; on the CPU give the sgemm rate the plait benchmark prints).

torch and transformers are needed (on the GPU machine they are there; elsewhere install them with
`python3 -m pip install torch transformers`); plait's build and tests never need them.
"""
import argparse
import statistics
import time


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--mode", default="eager", choices=["eager", "compile"])
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=0, help="key/value heads (default 0: as many as --heads)")
    p.add_argument("--ffn", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=10, help="timed steps, after 3 warm-up steps")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    a = p.parse_args()
    if a.kv_heads == 0:
        a.kv_heads = a.heads

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.ffn,
                         num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                         max_position_embeddings=a.seq, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    config._attn_implementation = "sdpa"
    device = torch.device(a.device)
    model = LlamaForCausalLM(config).to(device)
    model.train()
    params = sum(t.numel() for t in model.parameters())
    decay = [t for n, t in model.named_parameters() if t.dim() >= 2]
    no_decay = [t for n, t in model.named_parameters() if t.dim() < 2]
    fused = a.device == "cuda"
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=fused)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def loss_of(x, y):
        logits = model(input_ids=x).logits
        return torch.nn.functional.cross_entropy(logits.float().view(-1, a.vocab), y.view(-1))

    forward = torch.compile(loss_of) if a.mode == "compile" else loss_of

    def step():
        optimizer.zero_grad(set_to_none=True)
        if a.device == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = forward(inputs, targets)
        else:
            loss = forward(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    sync()
    times = []
    for _ in range(a.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    tokens_per_step = a.batch * a.seq
    flops_per_token = 6.0 * params + 12.0 * a.layers * a.heads * (a.hidden // a.heads) * a.seq
    tokens_per_s = tokens_per_step / median
    mfu = tokens_per_s * flops_per_token / (a.peak_tflops * 1e12)
    name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    print(f"# torch {torch.__version__} on {name}; {params / 1e6:.1f}M parameters, batch {a.batch} x {a.seq}")
    print(f"torch mode={a.mode} device={a.device} params={params} tokens_per_step={tokens_per_step} "
          f"step_ms={median * 1e3:.2f} tokens_per_s={tokens_per_s:.1f} mfu={mfu:.4f}")


if __name__ == "__main__":
    main()
