#!/usr/bin/env python3
"""Reference timings for bench/gpu/attention_bench.cc: the same shapes through
torch.nn.functional.scaled_dot_product_attention on the FLASH_ATTENTION backend (bf16).

Prefill: causal, one sequence of 1k / 4k / 16k tokens (plus 16 x 1k and 4 x 4k), H=32, Hkv=8, D=128,
FLOPs = 4 * seq^2 * H * D / 2. Decode: q_len 1, non-causal, contiguous KV, B in {1, 16, 64}, context
in {1k, 4k, 32k}; GB/s counts the K and V bytes read (2 * B * ctx * Hkv * D * 2).
GQA goes through enable_gqa=True where the flash backend takes it; otherwise K/V are expanded with
repeat_interleave outside the timed region (noted in the output).
Timing: torch.cuda.Event around each call, median of 20 after a warm-up; inputs rotate over several sets
where one set would fit in L2.

Prints lines like
  SDPA prefill hd128 seq 4096 ms X tflops Y
  SDPA decode B 16 ctx 4096 ms X gbps Y
Usage: python3 bench/gpu/sdpa_ref.py [prefill|decode]
"""
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

H, HKV, D = 32, 8, 128
WARMUP, RUNS = 5, 20
ROTATE_BYTES = 256 << 20


def timed(fn, sets):
    for i in range(WARMUP):
        fn(i % sets)
    torch.cuda.synchronize()
    evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(RUNS)]
    for i, (a, b) in enumerate(evs):
        a.record()
        fn((WARMUP + i) % sets)
        b.record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in evs)


def make_sets(B, q_len, kv_len):
    per_set = 2 * (B * q_len * H * D) + 2 * (B * kv_len * HKV * D)  # bf16 elements -> bytes below
    sets = max(1, min(64, -(-ROTATE_BYTES // (per_set * 2))))
    out = []
    for _ in range(sets):
        q = torch.randn(B, H, q_len, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, HKV, kv_len, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, HKV, kv_len, D, device="cuda", dtype=torch.bfloat16)
        out.append((q, k, v))
    return out


_gqa_ok = None


def sdpa(q, k, v, causal):
    """Flash-backend SDPA with native GQA; returns None if the backend rejects enable_gqa."""
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)


def run_shape(B, q_len, kv_len, causal):
    global _gqa_ok
    sets = make_sets(B, q_len, kv_len)
    if _gqa_ok is None:
        try:
            q, k, v = sets[0]
            sdpa(q, k, v, causal)
            torch.cuda.synchronize()
            _gqa_ok = True
        except (RuntimeError, TypeError) as e:
            print(f"# enable_gqa not taken by the flash backend ({str(e).splitlines()[0][:120]}); "
                  "K/V expanded with repeat_interleave outside the timing")
            _gqa_ok = False
    if not _gqa_ok:
        rep = H // HKV
        sets = [(q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)) for q, k, v in sets]

        def fn(i):
            q, k, v = sets[i]
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    else:

        def fn(i):
            q, k, v = sets[i]
            sdpa(q, k, v, causal)

    ms = timed(fn, len(sets))
    del sets
    torch.cuda.empty_cache()
    return ms


def bench_prefill():
    for B, seq in [(1, 1024), (1, 4096), (1, 16384), (16, 1024), (4, 4096)]:
        ms = run_shape(B, seq, seq, True)
        tflops = B * 4.0 * seq * seq * H * D / 2.0 / (ms * 1e-3) / 1e12
        label = f"prefill hd128 seq {seq}" if B == 1 else f"prefill hd128 batch {B} seq {seq}"
        print(f"SDPA {label} ms {ms:.4f} tflops {tflops:.1f}", flush=True)


def bench_decode():
    for B in (1, 16, 64):
        for ctx in (1024, 4096, 32768):
            kv_bytes = 2 * B * ctx * HKV * D * 2
            free, _ = torch.cuda.mem_get_info()
            if kv_bytes > 40e9 or kv_bytes * (1 if _gqa_ok is not False else 5) + (1 << 30) > free:
                print(f"# SDPA decode B {B} ctx {ctx}: skipped (memory)")
                continue
            ms = run_shape(B, 1, ctx, False)
            print(f"SDPA decode B {B} ctx {ctx} ms {ms:.4f} gbps {kv_bytes / (ms * 1e-3) / 1e9:.1f}", flush=True)


def main():
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    if which in ("all", "prefill"):
        bench_prefill()
    if which in ("all", "decode"):
        bench_decode()


if __name__ == "__main__":
    main()
