#!/usr/bin/env python3
"""plait's Host training step next to PyTorch's on the same CPU: the same LLaMA-style model, shape and AdamW, run
alternately (plait, PyTorch, plait, PyTorch, ...) so that both see the machine in the same state, three times each
by default. Prints every run, the median tokens/s of each, the median of the pairwise ratios plait / PyTorch, and
the copy bandwidth and plait's gradient norm + AdamW rate, measured in the same runs by plait-bench-train_step.

    bench/peers/side_by_side.py [--runs 3] [--steps 10] [--threads N] [--batch B] [--seq T] [--hidden D]
                                [--layers L] [--heads H] [--kv-heads K] [--ffn F] [--vocab V]

PyTorch (torch and transformers from PyPI) is used from --python if it imports there; otherwise it is installed on
demand into a virtual environment (--venv, default ~/.cache/plait/peers-venv; about 5.6 GB with the CUDA wheels PyPI
gives). plait's build and tests never need it. The plait side is build/host/bench/plait-bench-train_step (--bench).
"""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHAPE = ["batch", "seq", "hidden", "layers", "heads", "kv_heads", "ffn", "vocab"]
DEFAULTS = {"batch": 4, "seq": 256, "hidden": 384, "layers": 6, "heads": 6, "kv_heads": 0, "ffn": 1024, "vocab": 256}


def parse_line(text, prefix):
    """The key=value line a benchmark prints for scripts, as a dict of floats (strings where not numbers)."""
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            out = {}
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
            return out
    raise RuntimeError(f"no '{prefix} ...' line in the output:\n{text}")


def python_with_torch(args):
    """A Python that imports torch and transformers: --python if it does, else the venv, installed on demand."""
    probe = "import torch, transformers"
    if subprocess.run([args.python, "-c", probe], capture_output=True).returncode == 0:
        return args.python
    venv = Path(args.venv).expanduser()
    py = venv / "bin" / "python"
    if not py.exists() or subprocess.run([str(py), "-c", probe], capture_output=True).returncode != 0:
        print(f"# installing torch and transformers from PyPI into {venv} (once; several GB)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "torch", "transformers"], check=True)
    return str(py)


def run(cmd, env):
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key in SHAPE:
        p.add_argument("--" + key.replace("_", "-"), type=int, default=DEFAULTS[key])
    p.add_argument("--runs", type=int, default=3, help="runs of each, alternating (default 3)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    p.add_argument("--bench", default=str(ROOT / "build/host/bench/plait-bench-train_step"))
    p.add_argument("--python", default=sys.executable, help="a Python with torch and transformers, if there is one")
    p.add_argument("--venv", default="~/.cache/plait/peers-venv")
    a = p.parse_args()
    if a.kv_heads == 0:
        a.kv_heads = a.heads
    if not Path(a.bench).exists():
        sys.exit(f"side_by_side: {a.bench} is not built; run cmake --build --preset host --target plait-bench-train_step")
    torch_python = python_with_torch(a)

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    shape = []
    for key in SHAPE:
        shape += ["--" + key.replace("_", "-"), str(getattr(a, key))]
    plait_cmd = [a.bench, *shape, "--steps", str(a.steps)]
    torch_cmd = [torch_python, str(ROOT / "bench/peers/torch_train_step.py"), "--device", "cpu", *shape,
                 "--steps", str(a.steps), "--threads", str(a.threads)]

    print(f"# shape: batch {a.batch} x seq {a.seq}, hidden {a.hidden}, {a.layers} layers, heads {a.heads} "
          f"(kv {a.kv_heads}), ffn {a.ffn}, vocab {a.vocab}; {a.threads} threads; {a.runs} runs each, alternating")
    plait_runs, torch_runs = [], []
    for i in range(a.runs):
        out = run(plait_cmd, env)
        plait_runs.append(parse_line(out, "plait"))
        r = plait_runs[-1]
        print(f"plait   run {i + 1}: {r['tokens_per_s']:8.1f} tokens/s  step {r['step_ms']:8.1f} ms  "
              f"(sgemm {r['sgemm_gflops']:.0f} GFLOP/s, copy {r['copy_gbps']:.1f} GB/s, "
              f"norm+AdamW {r['optimizer_gbps']:.1f} GB/s, cores {100 * r['cpu_share']:.0f}%)", flush=True)
        out = run(torch_cmd, env)
        torch_runs.append(parse_line(out, "torch"))
        t = torch_runs[-1]
        print(f"pytorch run {i + 1}: {t['tokens_per_s']:8.1f} tokens/s  step {t['step_ms']:8.1f} ms", flush=True)

    ratios = [pr["tokens_per_s"] / tr["tokens_per_s"] for pr, tr in zip(plait_runs, torch_runs)]
    med = lambda rows, key: statistics.median(r[key] for r in rows)
    copy = med(plait_runs, "copy_gbps")
    optim = med(plait_runs, "optimizer_gbps")
    print(f"median  plait {med(plait_runs, 'tokens_per_s'):.1f} tokens/s, pytorch {med(torch_runs, 'tokens_per_s'):.1f}"
          f" tokens/s")
    print(f"ratio   plait / pytorch: median {statistics.median(ratios):.2f} (pairs: "
          f"{', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"memory  copy {copy:.1f} GB/s; plait's norm+AdamW {optim:.1f} GB/s = {100 * optim / copy:.0f}% of copy")
    print(f"side_by_side ratio={statistics.median(ratios):.3f} plait_tokens_per_s={med(plait_runs, 'tokens_per_s'):.1f} "
          f"torch_tokens_per_s={med(torch_runs, 'tokens_per_s'):.1f} copy_gbps={copy:.2f} optimizer_gbps={optim:.2f}")


if __name__ == "__main__":
    main()
