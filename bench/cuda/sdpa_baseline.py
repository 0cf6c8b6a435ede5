#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention (flash backend), causal, bf16, head dim 128, at the shapes of
attention_bench.cu (16k tokens: batch 8 at seq 2048, batch 2 at seq 8192; 16 heads). Prints one line per shape,
which plait-bench-cuda-attention reads to print its ratio:
    sdpa seq=2048 fwd_ms=... bwd_ms=... fwd_tflops=... fwd_bwd_tflops=...
Run on the GPU machine in the same call as the bench:
    python3 bench/cuda/sdpa_baseline.py | tee sdpa.txt && build/cuda/bench/cuda/plait-bench-cuda-attention sdpa.txt
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def milliseconds(fn, repeats=10):
    fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / repeats


def main():
    heads, head_dim = 16, 128
    print(f"# device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for seq in (2048, 8192):
        batch = 16384 // seq
        shape = (batch, heads, seq, head_dim)  # SDPA's layout (B, H, T, hd)
        q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        dout = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            fwd_ms = milliseconds(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            bwd_ms = milliseconds(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True))
        fwd_flops = 4.0 * batch * heads * seq * seq * head_dim / 2.0
        fwd_tflops = fwd_flops / fwd_ms * 1e-9
        total_tflops = 3.5 * fwd_flops / (fwd_ms + bwd_ms) * 1e-9
        print(f"sdpa seq={seq} fwd_ms={fwd_ms:.4f} bwd_ms={bwd_ms:.4f} fwd_tflops={fwd_tflops:.1f} "
              f"fwd_bwd_tflops={total_tflops:.1f}")


if __name__ == "__main__":
    main()
