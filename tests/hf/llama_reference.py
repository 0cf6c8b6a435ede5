#!/usr/bin/env python3
"""An independent forward of a Hugging Face LLaMA model, in pure Python (standard library only), to check plait's
export: it reads config.json and model.safetensors as transformers would and computes the last position's logits of
each token sequence by LlamaForCausalLM's equations (embedding; per layer x += o_proj(attention(rope(q), rope(k), v))
on input_layernorm(x), then x += down_proj(silu(gate_proj(h)) * up_proj(h)) on post_attention_layernorm(x); RMSNorm
as weight * x / sqrt(mean(x^2) + eps); rotate_half RoPE pairing dimension i with i + head_dim/2; grouped-query heads,
query head h reading kv head h // (heads / kv_heads); causal softmax scaled by 1/sqrt(head_dim); model.norm, lm_head
or the tied embedding). It compares them with the logits plait printed ("logits B v0 v1 ..." lines) and passes when
max |difference| <= 1e-4 x max |logit|. It also runs the forward with plait's own pairing (2i, 2i+1) on the exported
weights: that one must miss by far more, or the comparison could not have seen a wrong rotary convention.

Usage: llama_reference.py HF_DIR PLAIT_LOGITS_FILE TOKENS[,TOKENS...] [TOKENS,...]
"""
import json
import math
import struct
import sys
import time

TOLERANCE = 1e-4


def read_safetensors(path):
    """name -> (shape, flat list of floats), F32 or BF16."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    start = 8 + length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[start + begin:start + end]
        if entry["dtype"] == "F32":
            values = list(struct.unpack("<%df" % (len(raw) // 4), raw))
        elif entry["dtype"] == "BF16":
            halves = struct.unpack("<%dH" % (len(raw) // 2), raw)
            values = list(struct.unpack("<%df" % len(halves), struct.pack("<%dI" % len(halves), *[h << 16 for h in halves])))
        else:
            raise SystemExit("llama_reference.py reads F32 and BF16, not " + entry["dtype"])
        tensors[name] = (entry["shape"], values)
    return tensors


def matrix(tensors, name):
    (rows, cols), values = tensors[name]
    return [values[r * cols:(r + 1) * cols] for r in range(rows)]


def matvec(w, x):
    return [sum(a * b for a, b in zip(row, x)) for row in w]


def rmsnorm(x, weight, eps):
    scale = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [w * v * scale for w, v in zip(weight, x)]


def inverse_frequencies(config, head_dim, sequence_length):
    """The rotation rate of each pair: theta^(-2i/d), rescaled as transformers' rope_scaling does: "linear" divides
    every rate by factor (positions read factor times closer); "dynamic" raises the base for a sequence longer than
    max_position_embeddings; "llama3" turns the pairs whose wavelength exceeds original / low_freq_factor factor times
    slower, keeps the rate of those under original / high_freq_factor, and blends the two for those between, linearly
    in original / wavelength."""
    theta = config.get("rope_theta", 10000.0)
    rates = [theta ** (-2.0 * i / head_dim) for i in range(head_dim // 2)]
    scaling = config.get("rope_scaling")
    if not scaling:
        return rates
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return [rate / scaling["factor"] for rate in rates]
    if kind == "dynamic":
        # NTK-aware: the base grows with a sequence longer than max_position_embeddings, and is theta up to it.
        positions = config["max_position_embeddings"]
        longest = max(sequence_length, positions)
        factor = scaling["factor"]
        base = theta * (factor * longest / positions - (factor - 1)) ** (head_dim / (head_dim - 2))
        return [base ** (-2.0 * i / head_dim) for i in range(head_dim // 2)]
    assert kind == "llama3", scaling
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    scaled = []
    for rate in rates:
        wavelength = 2 * math.pi / rate
        if wavelength < original / high:
            scaled.append(rate)
        elif wavelength > original / low:
            scaled.append(rate / factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            scaled.append((1 - smooth) * rate / factor + smooth * rate)
    return scaled


def rope(x, heads, head_dim, position, rates, pairs):
    """Rotates each head of x at `position`; pairs 'half': (i, i + d/2) as HF; 'adjacent': (2i, 2i+1) as plait."""
    out = list(x)
    half = head_dim // 2
    for h in range(heads):
        base = h * head_dim
        for i in range(half):
            angle = position * rates[i]
            c, s = math.cos(angle), math.sin(angle)
            a, b = (base + i, base + i + half) if pairs == "half" else (base + 2 * i, base + 2 * i + 1)
            out[a] = x[a] * c - x[b] * s
            out[b] = x[b] * c + x[a] * s
    return out


def last_logits(config, tensors, tokens, pairs="half"):
    D = config["hidden_size"]
    H = config["num_attention_heads"]
    KV = config.get("num_key_value_heads", H)
    hd = D // H
    eps, rates = config["rms_norm_eps"], inverse_frequencies(config, hd, len(tokens))
    embedding = matrix(tensors, "model.embed_tokens.weight")
    x = [list(embedding[t]) for t in tokens]
    for layer in range(config["num_hidden_layers"]):
        p = "model.layers.%d." % layer
        w = {k: matrix(tensors, p + k + ".weight") for k in
             ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
        h = [rmsnorm(xt, tensors[p + "input_layernorm.weight"][1], eps) for xt in x]
        q = [rope(matvec(w["self_attn.q_proj"], ht), H, hd, t, rates, pairs) for t, ht in enumerate(h)]
        k = [rope(matvec(w["self_attn.k_proj"], ht), KV, hd, t, rates, pairs) for t, ht in enumerate(h)]
        v = [matvec(w["self_attn.v_proj"], ht) for ht in h]
        for t in range(len(tokens)):
            attended = []
            for head in range(H):
                kvh = head // (H // KV)
                qh = q[t][head * hd:(head + 1) * hd]
                scores = [sum(a * b for a, b in zip(qh, k[s][kvh * hd:(kvh + 1) * hd])) / math.sqrt(hd)
                          for s in range(t + 1)]
                top = max(scores)
                weights = [math.exp(s - top) for s in scores]
                total = sum(weights)
                attended += [sum(weights[s] * v[s][kvh * hd + j] for s in range(t + 1)) / total for j in range(hd)]
            x[t] = [a + b for a, b in zip(x[t], matvec(w["self_attn.o_proj"], attended))]
        for t in range(len(tokens)):
            h2 = rmsnorm(x[t], tensors[p + "post_attention_layernorm.weight"][1], eps)
            gate, up = matvec(w["mlp.gate_proj"], h2), matvec(w["mlp.up_proj"], h2)
            act = [g / (1.0 + math.exp(-g)) * u for g, u in zip(gate, up)]
            x[t] = [a + b for a, b in zip(x[t], matvec(w["mlp.down_proj"], act))]
    final = rmsnorm(x[-1], tensors["model.norm.weight"][1], eps)
    head = embedding if config.get("tie_word_embeddings", False) else matrix(tensors, "lm_head.weight")
    return matvec(head, final)


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    start = time.time()
    directory, plait_file = sys.argv[1], sys.argv[2]
    sequences = [[int(t) for t in arg.split(",")] for arg in sys.argv[3:]]
    with open(directory + "/config.json") as f:
        config = json.load(f)
    tensors = read_safetensors(directory + "/model.safetensors")
    plait = {}
    with open(plait_file) as f:
        for line in f:
            if line.startswith("logits "):
                fields = line.split()
                plait[int(fields[1])] = [float(v) for v in fields[2:]]
    worst, largest, wrong_convention = 0.0, 0.0, 0.0
    for b, tokens in enumerate(sequences):
        if b not in plait:
            raise SystemExit("FAIL: plait printed no logits for sequence %d" % b)
        ours = last_logits(config, tensors, tokens)
        if len(ours) != len(plait[b]):
            raise SystemExit("FAIL: %d logits from plait, %d here" % (len(plait[b]), len(ours)))
        worst = max(worst, max(abs(a - c) for a, c in zip(ours, plait[b])))
        largest = max(largest, max(abs(a) for a in ours))
        adjacent = last_logits(config, tensors, tokens, pairs="adjacent")
        wrong_convention = max(wrong_convention, max(abs(a - c) for a, c in zip(adjacent, plait[b])))
    print("reference forward: %d sequences of %d tokens, %d logits each, in %.2f s" %
          (len(sequences), len(sequences[0]), len(plait[0]), time.time() - start))
    print("max |logit| %.4f; max |plait - reference| %.3g (relative %.3g, tolerance %g)" %
          (largest, worst, worst / largest, TOLERANCE))
    print("with plait's (2i, 2i+1) pairing on HF's rows instead: max |difference| %.3g (relative %.3g)" %
          (wrong_convention, wrong_convention / largest))
    if worst > TOLERANCE * largest:
        raise SystemExit("FAIL: plait's logits differ from the reference forward of the exported model")
    if wrong_convention <= 100 * TOLERANCE * largest:
        raise SystemExit("FAIL: the check cannot tell the rotary conventions apart (attention too flat?)")
    print("PASS")


if __name__ == "__main__":
    main()
