"""Side-by-side reference for bench:gpu: the same forward passes in transformers (bf16, sdpa attention,
eager, no CUDA graphs) on the same random-weight model directory.
  decode: B sequences with a ctx-token KV cache, one new token each; tokens/s = B / step time
  prefill: one sequence of N tokens; tokens/s = N / forward time
Prints `HF <name> decode B <b> ctx <c> tok_s <x>` and `HF <name> prefill <n> tok_s <x>`.
Usage: python3 hf_ref.py --model DIR --name NAME [--batches 1,8,64,256] [--ctx 1024] [--prefill 4096]
"""
import argparse

import torch
from transformers import AutoModelForCausalLM, DynamicCache

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--name", default="model")
ap.add_argument("--batches", default="1,8,64,256")
ap.add_argument("--ctx", type=int, default=1024)
ap.add_argument("--prefill", type=int, default=4096)
a = ap.parse_args()

# loaded straight onto the GPU (the MoE shape is 28.6 GB: no host copy first)
try:
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa",
                                                 device_map="cuda").eval()
except (ImportError, ValueError):  # device_map needs accelerate where transformers asks for it
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
V = model.config.vocab_size
impl = getattr(model.config, "_experts_implementation", None)
if getattr(model.config, "num_experts", None):
    print(f"# {a.name}: transformers {__import__('transformers').__version__}, experts implementation {impl}", flush=True)


def timed(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    times.sort()
    return times[len(times) // 2]


with torch.inference_mode():
    for B in [int(x) for x in a.batches.split(",")]:
        ids = torch.randint(3, V, (B, a.ctx), device="cuda")
        cache = DynamicCache()
        model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        nxt = torch.randint(3, V, (B, 1), device="cuda")

        def step():
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.crop(a.ctx)  # keep the context at ctx for every timed step
            return out.logits.argmax(-1)

        t = timed(step, 10)
        print(f"HF {a.name} decode B {B} ctx {a.ctx} tok_s {B / t:.0f}", flush=True)
        del cache
        torch.cuda.empty_cache()
    ids = torch.randint(3, V, (1, a.prefill), device="cuda")
    t = timed(lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1), 5)
    print(f"HF {a.name} prefill {a.prefill} tok_s {a.prefill / t:.0f}", flush=True)
