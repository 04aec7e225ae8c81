#!/usr/bin/env bash
# On the GPU machine (bare: no Node, no npm): unpacks .gpu/ (scripts/gpu/pack.sh), builds the addon with the
# CUDA backend, then runs `npm run test:gpu` and/or `npm run bench:gpu` equivalents. Logs go to $OUT.
#   bash scripts/gpu/device-run.sh MODE[,MODE...]   (default all = test,bench), in this order:
#   test: npm run test:gpu;  quick: test + SGL_BENCH_QUICK=1 bench;
#   attn: the attention parity harness on every prefill kernel (SGL_PREFILL_WGMMA 2, 1, 0) and their prefill
#     timings beside SDPA (attn, fused and attn,fused build only their executables: a short device budget);
#   core: attn, test, attention_bench decode + SDPA, and the Qwen2.5-0.5B engine (decode B 1 / 8 / 64 / 256,
#     prefill 4096, and prefill on the mma.sync kernel);
#   fused: the fused-op harness (fused_test: the decode GEMVs, qkv_rope_store's two kernels, the prefill
#     matmul_silu_mul) and the op harness (ops_test), then `ops_bench prefill` (their timings);
#   prof: gte-Qwen2-1.5B /encode latency and throughput with GEMM tuning, the 16-byte rope kernel and the fused
#     gate|up + silu GEMM on and off, then nsys and ncu summaries of the 500-token forward;
#   pooled: one short call for the /encode speed work: fused_test, ops_test, attention_test on the short-prefill
#     route, gte-Qwen2-1.5B /encode latency and throughput (defaults; tuned GEMMs + 16-byte rope; short route;
#     unpruned; same-thread client), ops_bench prefill, attention_bench short, then the node GPU tests;
#   gte: the gte-Qwen2-1.5B /encode goals with the defaults (two encode-bench runs, one probe);
#   cand: the gte-Qwen2-1.5B /encode bench with 8, 16 and 32 GEMM tuning candidates (SGL_CAND_LIST);
#   split: the wgmma prefill's split-KV for short prefills: attention_test (split on, the default), attention_bench
#     short with SGL_PREFILL_SPLIT=0 / 1, the gte-Qwen2-1.5B single-request latency both ways, and one wave with
#     its step timeline (encode-bench --timeline);
#   radd: matmul_add (o_proj / down_proj into the residual stream): ops_test, the node GPU tests (pooled and
#     model parity), then the gte-Qwen2-1.5B /encode bench with SGL_MATMUL_ADD=1 and 0, twice each;
#   goals: the /encode goals with the defaults: gte-Qwen2-1.5B three encode-bench runs and a probe, with the
#     GPU's SM clock, power and temperature sampled every 200 ms meanwhile (gte-clocks.csv), then
#     bge-reranker-v2-m3 (one encode-bench run);
#   spin: the gte-Qwen2-1.5B /encode bench with the JS event loop's spin on and off (SGL_LOOP_SPIN), and one wave
#     with the all-at-once client (--burst) and its timeline;
#   bench: npm run bench:gpu
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what=${1:-all}
[[ $what == all ]] && what=test,bench
has() { [[ ,$what, == *,$1,* ]]; }
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source .gpu/prelude.sh || exit 1
tar -xJf .gpu/bundle.tar.xz
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
if [[ ,attn,fused,attn,fused, == *,$what,* ]]; then  # attn and / or fused alone: only their executables
  targets="attention_test attention_bench"; [[ $what == fused ]] && targets="fused_test ops_test ops_bench"
  [[ $what == *,* ]] && targets="attention_test attention_bench fused_test ops_test ops_bench"
  build() { node node_modules/cmake-js/bin/cmake-js configure --out build && cmake --build build -j 16 --target $targets; }
else
  build() { node node_modules/cmake-js/bin/cmake-js compile --out build; }
fi
if ! build > "$OUT/build.log" 2>&1; then
  tail -60 "$OUT/build.log"; exit 1
fi
grep -E "warning|CUDA backend" "$OUT/build.log" | head -20
echo "build: $(( $(date +%s) - t0 )) s"
rc=0
# harness LOG [VAR=value ...] EXE: runs a C++ harness (under the variables), its log in $OUT/LOG, and prints
# its FAIL lines and its summary; a failure sets rc.
harness() {
  local log=$1; shift
  echo "== $*"
  env "$@" > "$OUT/$log" 2>&1 || rc=1
  grep -E "FAIL" "$OUT/$log" | head -12; tail -1 "$OUT/$log"
}
# The attention of short prefills (/encode sizes) on each kernel: wgmma BM 128, mma.sync BM 128 and BM 64.
attn_short() {
  for v in "1 0" "0 0" "0 3"; do
    set -- $v
    SGL_PREFILL_WGMMA=$1 SGL_PREFILL_VARIANT=$2 build/attention_bench short | grep ^ATTN | sed "s/^ATTN short/ATTN short-w$1v$2/"
  done 2>&1 | tee "$OUT/attn-short.txt"
}
# gte-Qwen2-1.5B with random weights at $m (written once per machine).
gte_model() {
  m=/tmp/sgl-models/gte-qwen2-1.5b-instruct
  [[ -f $m/config.json ]] || python3 bench/make_random_model.py --shape gte-qwen2-1.5b-instruct --out $m --device cuda \
    --tokenizer-dir test/fixtures/models/qwen2-tiny >&2
}
if has test; then
  bash scripts/gpu/test-gpu.sh 2>&1 | tee "$OUT/test-gpu.log"; rc=${PIPESTATUS[0]}
fi
if has quick; then
  bash scripts/gpu/test-gpu.sh 2>&1 | tee "$OUT/test-gpu.log"; rc=${PIPESTATUS[0]}
  SGL_BENCH_QUICK=1 bash scripts/gpu/bench-gpu.sh 2>&1 | tee "$OUT/bench-gpu.log"
fi
# attn and core: the attention harness on each prefill kernel, then their prefill timings beside SDPA
attn_first() {  # [modes]: SGL_PREFILL_WGMMA values, default "2 1 0" (2 overlapped wgmma, 1 plain, 0 mma.sync)
  local modes=${1:-2 1 0}
  for m in $modes; do harness "attn-test-$m.log" SGL_PREFILL_WGMMA=$m build/attention_test; done
  command -v cuobjdump >/dev/null && cuobjdump -sass build/libsgl_cuda_sm90a.a 2>/dev/null | grep -oE "HGMMA\.[A-Za-z0-9x.]+" | sort | uniq -c
  { for m in $modes; do SGL_PREFILL_WGMMA=$m build/attention_bench prefill | grep ^ATTN | sed "s/^ATTN prefill/ATTN prefill-w$m/"; done
    python3 bench/gpu/sdpa_ref.py prefill | grep ^SDPA; } 2>&1 | tee "$OUT/bench-attn-prefill.log"
}
has attn && attn_first "${SGL_ATTN_MODES:-2 1 0}"
if has fused; then
  harness fused-test.log build/fused_test
  harness ops-test.log build/ops_test
  # the prefill kernels fused_test checks, timed: qkv_rope_store's scalar / 16-byte kernels, gemm_silu
  build/ops_bench prefill 2>&1 | grep -E "^OPS|rror" | tee "$OUT/ops-prefill.log"
fi
if has core; then  # most important first: a short budget may cut the rest (logs stay in $OUT)
  attn_first
  bash scripts/gpu/test-gpu.sh > "$OUT/test-gpu.log" 2>&1 || rc=1
  grep -E "^== |passed|FAIL|^not ok|test:gpu" "$OUT/test-gpu.log" | head -40
  {
    build/attention_bench decode | grep ^ATTN
    python3 bench/gpu/sdpa_ref.py decode | grep ^SDPA
    m=/tmp/sgl-models/qwen2.5-0.5b-instruct
    python3 bench/make_random_model.py --shape qwen2.5-0.5b-instruct --out $m --device cuda >&2
    node dist/bench/gpu/e2e-bench.js --model $m --name qwen2.5-0.5b --ctx 1024 --batches 1,8,64,256 --out 128 --prefill 4096 | grep ^E2E
    SGL_PREFILL_WGMMA=0 node dist/bench/gpu/e2e-bench.js --model $m --name "qwen2.5-0.5b mma.sync prefill" --ctx 1024 --batches 1 --out 16 --prefill 4096 | grep ^E2E
  } 2>&1 | tee "$OUT/bench-core.log"
fi
if has prof; then
  gte_model
  # the cuBLASLt heuristic's first algorithm (SGL_GEMM_TUNE=0) against the fastest of its first 8 (=1); the
  # unfused gate|up GEMM + silu_mul (SGL_MATMUL_SILU=0) against the fused wgmma kernel (=1; 2026-12-07: slower,
  # so only with SGL_PROF_SILU=1); qkv_rope_store's scalar kernel (SGL_ROPE_VEC=0) against the 16-byte one (=1).
  # The batched wave runs after an unmeasured one (--warm-wave): steady state. Combos: tune, silu, rope digits.
  combos=${SGL_PROF_COMBOS:-"000 100 101"}; [[ -n ${SGL_PROF_SILU:-} ]] && combos="$combos 010 110"
  for c in $combos; do
    t=${c:0:1}; f=${c:1:1}; r=${c:2:1}; n="gte-qwen2-1.5b tune$t silu$f rope$r"
    export SGL_GEMM_TUNE=$t SGL_MATMUL_SILU=$f SGL_ROPE_VEC=$r
    node dist/bench/encode-probe.js --model $m --name "$n" --embedding --device cuda --len 500 --n 50
    node dist/bench/encode-bench.js --model $m --name "$n" --embedding --device cuda --len 500 --count 512 --single 50 --warm-wave
  done 2>&1 | grep -E "^PROBE|^ENC|rror" | tee "$OUT/probe-gte.txt"
  # the last combo's wave with the client on the server's thread (encode-bench before 2026-12-07)
  c=${combos##* }; t=${c:0:1}; f=${c:1:1}; r=${c:2:1}
  SGL_GEMM_TUNE=$t SGL_MATMUL_SILU=$f SGL_ROPE_VEC=$r node dist/bench/encode-bench.js --model $m --embedding --device cuda \
    --name "gte-qwen2-1.5b tune$t silu$f rope$r same-thread" --len 500 --count 512 --single 10 --warm-wave --same-thread \
    2>&1 | grep -E "^ENC|rror" | tee -a "$OUT/probe-gte.txt"
  attn_short
  harness attn-test-short.log SGL_SHORT_PREFILL=1 build/attention_test  # short prefills on the 64-row tiles
  # the overlap schedule (the server's default) on a single request; the last layer on every token (no pruning)
  node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b overlap" --embedding --device cuda --len 500 --n 50 --overlap 2>&1 | grep -E "^PROBE|rror" | tee -a "$OUT/probe-gte.txt"
  SGL_GEMM_TUNE=$t SGL_ROPE_VEC=$r node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b tune$t rope$r no-prune" --embedding --device cuda --len 500 --n 50 --no-prune 2>&1 | grep -E "^PROBE|rror" | tee -a "$OUT/probe-gte.txt"
  SGL_GEMM_TUNE=$t SGL_ROPE_VEC=$r SGL_SHORT_PREFILL=1 node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b tune$t rope$r short-bm64" --embedding --device cuda --len 500 --n 50 2>&1 | grep -E "^PROBE|rror" | tee -a "$OUT/probe-gte.txt"
  # nsys (where the machine has it): the CUDA API calls and the kernels of 75 encodes, to tell host-side gaps
  # (synchronous copies, allocations, launch cost) from kernel time
  nsys_bin=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
  if [[ -n $nsys_bin ]]; then
    "$nsys_bin" profile -t cuda -o "$OUT/gte" --force-overwrite true \
      node dist/bench/encode-probe.js --model $m --name gte-qwen2-1.5b --embedding --device cuda --len 500 --n 20 > "$OUT/nsys-run.txt" 2>&1
    for r in cuda_api_sum cuda_gpu_kern_sum; do
      echo "== nsys $r (75 encodes + warm-up; ns)"
      "$nsys_bin" stats -q -r $r -f csv "$OUT/gte.nsys-rep" 2>/dev/null | python3 -c '
import csv, sys
for row in csv.reader(l for l in sys.stdin if "," in l):
    print(*row[:4], row[-1][:90])' | head -28
    done | tee "$OUT/nsys-gte.txt"
  else
    echo "no nsys on this machine"
  fi
  # ncu profiles only a window of ~one forward after the warm-up encodes (every kernel it profiles is replayed)
  SGL_ROPE_VEC=1 ncu --metrics gpu__time_duration.sum --print-summary per-kernel --launch-skip 1500 --launch-count 450 \
    node dist/bench/encode-probe.js --model $m --name gte-qwen2-1.5b --embedding --device cuda --len 500 --n 2 \
    > "$OUT/prof-gte.txt" 2>&1 || rc=1
  grep -E "PROBE|^  [a-zA-Z_]|gpu__time_duration" "$OUT/prof-gte.txt" | head -80
fi
if has pooled; then  # one short call for the pooled-model speed work: checks first, then the /encode timings
  harness fused-test.log build/fused_test
  harness ops-test.log build/ops_test
  harness attn-test-short.log SGL_SHORT_PREFILL=1 build/attention_test
  gte_model
  { # the defaults, then GEMM tuning with the 16-byte rope kernel; their probes (forward / engine / HTTP)
    for c in 00 11; do
      t=${c:0:1}; r=${c:1:1}; n="gte-qwen2-1.5b tune$t rope$r"
      SGL_GEMM_TUNE=$t SGL_ROPE_VEC=$r node dist/bench/encode-bench.js --model $m --name "$n" --embedding --device cuda --len 500 --count 512 --single 50 --warm-wave
      SGL_GEMM_TUNE=$t SGL_ROPE_VEC=$r node dist/bench/encode-probe.js --model $m --name "$n" --embedding --device cuda --len 500 --n 50 --overlap
    done
    SGL_GEMM_TUNE=1 SGL_ROPE_VEC=1 SGL_SHORT_PREFILL=1 node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b tune1 rope1 short-bm64" --embedding --device cuda --len 500 --count 0 --single 50
    SGL_GEMM_TUNE=1 SGL_ROPE_VEC=1 node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b tune1 rope1 no-prune" --embedding --device cuda --len 500 --n 50 --overlap --no-prune
    SGL_GEMM_TUNE=1 SGL_ROPE_VEC=1 node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b tune1 rope1 same-thread" --embedding --device cuda --len 500 --count 512 --single 0 --warm-wave --same-thread
  } 2>&1 | grep -E "^PROBE|^ENC|rror" | tee "$OUT/pooled-gte.txt"
  build/ops_bench prefill 2>&1 | grep -E "^OPS|rror" | tee "$OUT/ops-prefill.log"
  attn_short
  echo "== node GPU tests with SGL_GEMM_TUNE=1 SGL_ROPE_VEC=1"
  SGL_GEMM_TUNE=1 SGL_ROPE_VEC=1 node --test --test-concurrency=1 dist/test/gpu/*.test.js > "$OUT/node-gpu-tests.log" 2>&1 || rc=1
  grep -E "^# (tests|pass|fail)|^not ok|PARITY" "$OUT/node-gpu-tests.log" | head -40
fi
if has gte; then  # the gte-Qwen2-1.5B /encode goals with the defaults: two bench runs and a probe
  gte_model
  for i in 1 2; do
    node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b run$i" --embedding --device cuda --len 500 --count 512 --single 100 --warm-wave
  done 2>&1 | grep -E "^ENC|rror" | tee "$OUT/gte.txt"
  node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b" --embedding --device cuda --len 500 --n 100 --overlap 2>&1 | grep -E "^PROBE|rror" | tee -a "$OUT/gte.txt"
fi
if has cand; then  # GEMM tuning's candidate count (SGL_GEMM_CANDIDATES) on the gte-Qwen2-1.5B /encode bench
  gte_model
  for n in ${SGL_CAND_LIST:-8 16 32}; do
    SGL_GEMM_CANDIDATES=$n node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b candidates $n" --embedding --device cuda --len 500 --count 512 --single 50 --warm-wave
  done 2>&1 | grep -E "^ENC|rror" | tee "$OUT/cand-gte.txt"
fi
if has split; then
  harness attn-test-split.log build/attention_test
  for sp in 0 1; do
    SGL_PREFILL_SPLIT=$sp build/attention_bench short | grep ^ATTN | sed "s/^ATTN short/ATTN short-split$sp/"
  done 2>&1 | tee "$OUT/attn-split.txt"
  gte_model
  {
    for sp in 0 1 0 1; do
      SGL_PREFILL_SPLIT=$sp node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b split$sp" --embedding --device cuda --len 500 --n 100 --overlap
    done
    node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b split1" --embedding --device cuda --len 500 --count 512 --single 100 --warm-wave --timeline
  } 2>&1 | grep -E "^PROBE|^ENC|rror" | tee "$OUT/split-gte.txt"
fi
if has goals; then
  gte_model
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv -lms 200 > "$OUT/gte-clocks.csv" 2>&1 &
  smi=$!
  {
    for i in 1 2 3; do
      node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b run$i" --embedding --device cuda --len 500 --count 512 --single 100 --warm-wave
    done
    node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b" --embedding --device cuda --len 500 --n 100 --overlap
  } 2>&1 | grep -E "^PROBE|^ENC|rror" | tee "$OUT/goals.txt"
  kill $smi 2>/dev/null
  r=/tmp/sgl-models/bge-reranker-v2-m3
  [[ -f $r/config.json ]] || python3 bench/make_random_model.py --shape bge-reranker-v2-m3 --out $r --device cuda \
    --tokenizer-dir test/fixtures/models/xlmr-reranker-tiny >&2
  node dist/bench/encode-bench.js --model $r --name bge-reranker-v2-m3 --device cuda --len 500 --count 512 --single 100 --warm-wave \
    2>&1 | grep -E "^ENC|rror" | tee -a "$OUT/goals.txt"
fi
if has radd; then
  harness ops-test.log build/ops_test
  grep -E "matmul_add" "$OUT/ops-test.log" | head -14
  node --test --test-concurrency=1 dist/test/gpu/*.test.js > "$OUT/node-gpu-tests.log" 2>&1 || rc=1
  grep -E "^# (tests|pass|fail)|^not ok|PARITY" "$OUT/node-gpu-tests.log" | head -30
  gte_model
  for ma in 1 0 1 0; do
    SGL_MATMUL_ADD=$ma node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b matmul_add$ma" --embedding --device cuda --len 500 --count 512 --single 100 --warm-wave
  done 2>&1 | grep -E "^ENC|rror" | tee "$OUT/radd-gte.txt"
fi
if has spin; then
  gte_model
  {
    for sp in 1 0 1 0; do
      SGL_LOOP_SPIN=$sp node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b loopspin$sp" --embedding --device cuda --len 500 --count 512 --single 100 --warm-wave
      SGL_LOOP_SPIN=$sp node dist/bench/encode-probe.js --model $m --name "gte-qwen2-1.5b loopspin$sp" --embedding --device cuda --len 500 --n 100 --overlap
    done
    node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b sliced" --embedding --device cuda --len 500 --count 512 --single 0 --warm-wave --timeline | sed -n 1,4p
    node dist/bench/encode-bench.js --model $m --name "gte-qwen2-1.5b burst" --embedding --device cuda --len 500 --count 512 --single 0 --warm-wave --timeline --burst | sed -n 1,4p
  } 2>&1 | grep -E "^PROBE|^ENC|rror" | tee "$OUT/spin-gte.txt"
fi
if has bench; then
  bash scripts/gpu/bench-gpu.sh 2>&1 | tee "$OUT/bench-gpu.log"
fi
exit $rc
