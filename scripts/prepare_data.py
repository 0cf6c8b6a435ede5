#!/usr/bin/env python3
"""Tokenize text files into token shards that plait-train reads with --data 'DIR/train_*.bin'.

A shard is the llm.c / nanoGPT format: a header of 256 int32 (magic 20240520, version 1 for uint16 tokens or 2 for
uint32 when the vocabulary exceeds 65535, the token count, and in the fourth word the vocabulary size, which llm.c
leaves 0), then the tokens. Each file ends with the tokenizer's end-of-text token, so documents stay apart.

    scripts/prepare_data.py --tokenizer gpt2 --out data/ books/*.txt
    scripts/prepare_data.py --tokenizer hf:meta-llama/Llama-2-7b-hf --out data/ --val-fraction 0.01 corpus.txt

--tokenizer gpt2 uses tiktoken's GPT-2 encoding; hf:NAME_OR_DIR a Hugging Face tokenizer (a hub name, or a local
directory with tokenizer.json). What is missing (tiktoken, or transformers) is installed from PyPI into a virtual
environment under ~/.cache/plait on first use; the build and the tests never need it.
"""
import argparse
import os
import struct
import subprocess
import sys
import venv

MAGIC = 20240520


def ensure(module, package):
    """Import `module`, or install `package` into plait's cache venv and run this script again there."""
    try:
        return __import__(module)
    except ImportError:
        pass
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    env = os.path.join(cache, "plait", "data-venv")
    python = os.path.join(env, "bin", "python")
    if os.path.realpath(sys.executable) == os.path.realpath(python):
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", package])
        return __import__(module)
    print(f"prepare_data: installing {package} from PyPI into {env} (once)", file=sys.stderr)
    if not os.path.exists(python):
        venv.create(env, with_pip=True)
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", package])
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def tokenizer(name):
    """(encode, vocab size, end-of-text id) of the named tokenizer."""
    if name == "gpt2":
        tiktoken = ensure("tiktoken", "tiktoken")
        try:
            enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # tiktoken downloads the encoding once, then keeps it in its cache
            sys.exit(f"prepare_data: tiktoken could not fetch GPT-2's vocabulary ({type(e).__name__}); it downloads it "
                     "once: run this where the internet is reachable (or set TIKTOKEN_CACHE_DIR to a copy), or give "
                     "--tokenizer hf:DIR with a local tokenizer.json")
        return (lambda text: enc.encode_ordinary(text)), enc.n_vocab, enc.eot_token
    if name.startswith("hf:"):
        transformers = ensure("transformers", "transformers")
        tok = transformers.AutoTokenizer.from_pretrained(name[3:])
        eot = tok.eos_token_id if tok.eos_token_id is not None else 0
        return (lambda text: tok.encode(text, add_special_tokens=False)), len(tok), eot
    sys.exit(f"prepare_data: unknown --tokenizer '{name}': use gpt2 or hf:NAME_OR_DIR")


def write_shard(path, tokens, vocab):
    version, code = (1, "H") if vocab <= 65536 else (2, "I")
    header = struct.pack("<256i", MAGIC, version, len(tokens), vocab, *([0] * 252))
    with open(path + ".tmp", "wb") as f:
        f.write(header)
        f.write(struct.pack(f"<{len(tokens)}{code}", *tokens))
    os.replace(path + ".tmp", path)  # a shard is whole or absent


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", help="text files (UTF-8)")
    p.add_argument("--tokenizer", default="gpt2", help="gpt2 (tiktoken) or hf:NAME_OR_DIR (default gpt2)")
    p.add_argument("--out", required=True, help="directory for train_NNNNNN.bin (and val_NNNNNN.bin)")
    p.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard (default 1e8)")
    p.add_argument("--val-fraction", type=float, default=0.0, help="the last fraction of the tokens as val_*.bin")
    a = p.parse_args()
    if not 0.0 <= a.val_fraction < 1.0:
        sys.exit("prepare_data: --val-fraction takes a number in [0, 1)")
    encode, vocab, eot = tokenizer(a.tokenizer)
    tokens = []
    for name in a.files:
        try:
            with open(name, encoding="utf-8", errors="replace") as f:
                tokens += encode(f.read()) + [eot]
        except OSError as e:
            sys.exit(f"prepare_data: cannot read '{name}': {e.strerror}")
    os.makedirs(a.out, exist_ok=True)
    n_val = int(len(tokens) * a.val_fraction)
    parts = [("train", tokens[: len(tokens) - n_val]), ("val", tokens[len(tokens) - n_val :])]
    for split, part in parts:
        for i in range(0, len(part), a.shard_tokens):
            path = os.path.join(a.out, f"{split}_{i // a.shard_tokens:06d}.bin")
            write_shard(path, part[i : i + a.shard_tokens], vocab)
            print(f"{path}: {len(part[i : i + a.shard_tokens])} tokens, vocabulary {vocab}")
    print(f"train with: plait-train --data '{os.path.join(a.out, 'train_*.bin')}'")


if __name__ == "__main__":
    main()
