#!/usr/bin/env bash
# On the GPU machine (bare: no Node, no npm): unpacks .gpu/ (scripts/gpu/pack.sh), builds the addon with the
# CUDA backend, then runs `npm run test:gpu` and/or `npm run bench:gpu` equivalents. Logs go to $OUT.
#   bash scripts/gpu/device-run.sh test|bench|all|quick|attn   (quick: test + SGL_BENCH_QUICK=1 bench; attn: the
#   attention parity harness and prefill timings with the wgmma kernel and with SGL_PREFILL_WGMMA=0, beside SDPA)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
what=${1:-all}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source .gpu/prelude.sh || exit 1
tar -xJf .gpu/bundle.tar.xz
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
if [[ $what == attn ]]; then  # only the two attention executables (a short device budget)
  build() { node node_modules/cmake-js/bin/cmake-js configure --out build && cmake --build build -j 16 --target attention_test attention_bench; }
else
  build() { node node_modules/cmake-js/bin/cmake-js compile --out build; }
fi
if ! build > "$OUT/build.log" 2>&1; then
  tail -60 "$OUT/build.log"; exit 1
fi
grep -E "warning|CUDA backend" "$OUT/build.log" | head -20
echo "build: $(( $(date +%s) - t0 )) s"
rc=0
if [[ $what == test || $what == all ]]; then
  bash scripts/gpu/test-gpu.sh 2>&1 | tee "$OUT/test-gpu.log"; rc=${PIPESTATUS[0]}
fi
if [[ $what == quick ]]; then
  bash scripts/gpu/test-gpu.sh 2>&1 | tee "$OUT/test-gpu.log"; rc=${PIPESTATUS[0]}
  SGL_BENCH_QUICK=1 bash scripts/gpu/bench-gpu.sh 2>&1 | tee "$OUT/bench-gpu.log"
fi
if [[ $what == attn ]]; then
  for m in 2 1 0; do  # SGL_PREFILL_WGMMA: 2 overlapped wgmma (default), 1 plain wgmma, 0 mma.sync
    echo "== attention_test SGL_PREFILL_WGMMA=$m"
    SGL_PREFILL_WGMMA=$m build/attention_test > "$OUT/attn-test-$m.log" 2>&1 || rc=1
    grep -E "FAIL" "$OUT/attn-test-$m.log" | head -8; tail -1 "$OUT/attn-test-$m.log"
  done
  command -v cuobjdump >/dev/null && cuobjdump -sass build/libsgl_cuda_sm90a.a 2>/dev/null | grep -oE "HGMMA\.[A-Za-z0-9x.]+" | sort | uniq -c
  for m in 2 1 0; do
    SGL_PREFILL_WGMMA=$m build/attention_bench prefill | grep ^ATTN | sed "s/^ATTN prefill/ATTN prefill-w$m/"
  done 2>&1 | tee "$OUT/attn-bench.log"
  python3 bench/gpu/sdpa_ref.py prefill 2>&1 | grep ^SDPA | tee -a "$OUT/attn-bench.log"
fi
if [[ $what == bench || $what == all ]]; then
  bash scripts/gpu/bench-gpu.sh 2>&1 | tee "$OUT/bench-gpu.log"
fi
exit $rc
