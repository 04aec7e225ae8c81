#!/usr/bin/env bash
# `npm run bench:gpu`, on a machine with an NVIDIA GPU, the addon built with CUDA, and Python with torch +
# transformers: kernel benchmarks (attention vs torch SDPA flash on the same shapes, matmul and elementwise
# ops, device copy bandwidth, sample_rows), then the end-to-end engine on random-weight models of real shapes
# (bench/make_random_model.py) beside the same forward in transformers. Prints a table last.
#   SGL_BENCH_MODELS=/tmp/sgl-models (where the random models are written)  SGL_BENCH_SKIP_8B=1 (skip Llama-3.1-8B)
#   SGL_BENCH_SKIP_ENCODE=1 (skip the pooled models: gte-Qwen2-1.5B embeddings, bge-reranker-v2-m3)
#   SGL_BENCH_QUICK=1: only the Qwen2.5-0.5B engine runs (greedy, whole-vocabulary sampling, filtered sampling),
#   plus the sample_rows benchmark and the pooled models; no other kernel benchmarks, no transformers
#   reference, no 8B (a short device budget)
#   SGL_BENCH_SKIP_MOE=1 (skip Qwen1.5-MoE-A2.7B: 28.6 GB of random weights, needs ~32 GB of free disk)
#   SGL_BENCH_ONLY=moe,encode (a comma list of sections to run alone: kernels, sampling, qwen05, llama8b,
#   encode, moe)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
models=${SGL_BENCH_MODELS:-/tmp/sgl-models}
mkdir -p "$models"
log=$(mktemp)
exe() { ls build/$1 build/Release/$1 2>/dev/null | head -1; }
run() { echo "\$ $*" >&2; "$@" 2>&1 | tee -a "$log"; }

quick=${SGL_BENCH_QUICK:-}
only=${SGL_BENCH_ONLY:-}
want() { [[ -z $only || ,$only, == *,$1,* ]]; }  # want SECTION: run it (all run when SGL_BENCH_ONLY is unset)
if [[ -z $quick ]] && want kernels; then
  [[ -n $(exe attention_bench) ]] && run "$(exe attention_bench)"
  # prefill on each kernel, same shapes: the overlapped and the plain-schedule wgmma kernels (SGL_PREFILL_WGMMA=2,
  # 1; sm_90) and the mma.sync kernel (0, what other GPUs run)
  for m in 2 1 0; do
    [[ -n $(exe attention_bench) ]] && SGL_PREFILL_WGMMA=$m "$(exe attention_bench)" prefill 2>&1 | sed "s/^ATTN prefill/ATTN prefill-w$m/" | tee -a "$log"
  done
  run python3 bench/gpu/sdpa_ref.py
  [[ -n $(exe ops_bench) ]] && run "$(exe ops_bench)"
fi
# sample_rows (top-k / top-p / min-p / penalties / logprobs finished on the GPU), quick mode included
want sampling && [[ -n $(exe sampling_bench) ]] && run "$(exe sampling_bench)"

mk() {  # mk SHAPE [TOKENIZER_DIR]
  [[ -f $models/$1/config.json ]] || python3 bench/make_random_model.py --shape "$1" --out "$models/$1" --device cuda ${2:+--tokenizer-dir "$2"} >&2
}
q05=(node dist/bench/gpu/e2e-bench.js --model "$models/qwen2.5-0.5b-instruct" --name qwen2.5-0.5b --ctx 1024)
if want qwen05; then
mk qwen2.5-0.5b-instruct
if [[ -z $quick ]]; then
  run "${q05[@]}" --batches 1,8,64,256 --out 128 --prefill 4096
  run "${q05[@]}" --batches 1,64 --out 64 --prefill 1024 --no-graph
  run "${q05[@]}" --batches 1,256 --out 64 --prefill 1024 --temperature 1
else
  run "${q05[@]}" --batches 1,256 --out 64 --prefill 4096
  run "${q05[@]}" --batches 1,256 --out 64 --prefill 1024 --no-overlap
  SGL_PDL=1 run "${q05[@]}" --batches 1,256 --out 64 --prefill 1024
fi
# top-k / top-p / min-p and a penalty: the rows the whole-vocabulary path cannot take
run "${q05[@]}" --batches 1,256 --out 64 --prefill 1024 --temperature 0.8 --top-k 50 --top-p 0.9 --min-p 0.02 --repetition-penalty 1.1
[[ -z $quick ]] && run python3 bench/gpu/hf_ref.py --model "$models/qwen2.5-0.5b-instruct" --name qwen2.5-0.5b --batches 1,8,64,256 --ctx 1024 --prefill 4096
fi
if [[ -z ${SGL_BENCH_SKIP_8B:-} && -z $quick ]] && want llama8b; then
  mk llama-3.1-8b
  run node dist/bench/gpu/e2e-bench.js --model "$models/llama-3.1-8b" --name llama-3.1-8b --batches 1 --ctx 1024 --out 64 --prefill 4096
  run python3 bench/gpu/hf_ref.py --model "$models/llama-3.1-8b" --name llama-3.1-8b --batches 1 --ctx 1024 --prefill 4096
fi
# pooled models over HTTP (/encode): a 500-token request alone, and 512 of them at once
if [[ -z ${SGL_BENCH_SKIP_ENCODE:-} ]] && want encode; then
  mk gte-qwen2-1.5b-instruct test/fixtures/models/qwen2-tiny
  run node dist/bench/encode-bench.js --model "$models/gte-qwen2-1.5b-instruct" --name gte-qwen2-1.5b --embedding --device cuda --len 500 --count 512
  run node dist/bench/encode-bench.js --model "$models/gte-qwen2-1.5b-instruct" --name gte-qwen2-1.5b --embedding --device cuda --len 500 --count 512 --no-overlap
  # where a single request's time goes beside the forward: engine alone, HTTP (node:http), HTTP (fetch)
  run node dist/bench/encode-probe.js --model "$models/gte-qwen2-1.5b-instruct" --name gte-qwen2-1.5b --embedding --device cuda --len 500
  mk bge-reranker-v2-m3 test/fixtures/models/xlmr-reranker-tiny
  run node dist/bench/encode-bench.js --model "$models/bge-reranker-v2-m3" --name bge-reranker-v2-m3 --device cuda --len 500 --count 512
  run node dist/bench/encode-bench.js --model "$models/bge-reranker-v2-m3" --name bge-reranker-v2-m3 --device cuda --len 500 --count 0 --no-overlap
fi
# MoE (Qwen1.5-MoE-A2.7B shape): decode at B 1 and 64, prefill 4096, each with the expert distribution
# recorder off and on in the same engine (alternating rounds), and the same forward in transformers
if [[ -z ${SGL_BENCH_SKIP_MOE:-} ]] && want moe; then
  # the MoE ops alone (the kernels section runs them too, with the rest of ops_bench)
  [[ -n $quick || -n $only ]] && [[ -n $(exe ops_bench) ]] && run "$(exe ops_bench)" moe
  free_gb=$(df -Pk "$models" 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}')
  if [[ -f $models/qwen1.5-moe-a2.7b/config.json || ${free_gb:-0} -ge 32 ]]; then
    mk qwen1.5-moe-a2.7b test/fixtures/models/qwen2-tiny
    moe=(node dist/bench/gpu/e2e-bench.js --model "$models/qwen1.5-moe-a2.7b" --name qwen1.5-moe-a2.7b --batches 1,64 --ctx 1024 --out 64 --prefill 4096)
    run "${moe[@]}" --expert-record stat
    [[ -z $quick ]] && run "${moe[@]}" --expert-record per_token
    run python3 bench/gpu/hf_ref.py --model "$models/qwen1.5-moe-a2.7b" --name qwen1.5-moe-a2.7b --batches 1,64 --ctx 1024 --prefill 4096
  else
    echo "MoE section skipped: ${free_gb:-?} GB free under $models, the model needs ~32 GB" | tee -a "$log"
  fi
fi
echo
echo "==== summary"
grep -E "^(ATTN|SDPA|OPS|SAMPLE|E2E|ENC|PROBE|HF|MoE) " "$log"
rm -f "$log"
