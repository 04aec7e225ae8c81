#!/usr/bin/env bash
# `npm run test:gpu`, on a machine with an NVIDIA GPU and the addon built with CUDA (npm install does that
# where nvcc is found): the kernel parity harnesses (test/gpu/*_test.cc: every CUDA op against the CPU
# backend on random inputs) and the end-to-end GPU tests (test/gpu/*.test.ts: the fixtures' goldens, batch
# invariance, the radix cache), which the plain `npm test` skips without a GPU.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
fail=0
for src in test/gpu/*_test.cc; do
  name=$(basename "$src" .cc)
  exe=$(ls build/$name build/Release/$name 2>/dev/null | head -1)
  if [[ -z $exe ]]; then echo "FAIL: $name was not built (is the addon built with CUDA?)"; fail=1; continue; fi
  echo "== $name"
  out=$("$exe" 2>&1); code=$?
  echo "$out" | grep -E "FAIL|skipped" | head -40
  echo "$out" | tail -1
  [[ $code -ne 0 ]] && fail=1
done
# each prefill kernel whatever the default picks: the overlapped and the plain-schedule wgmma kernels (sm_90)
# and the mma.sync one (other GPUs' path)
for m in 2 1 0; do
  exe=$(ls build/attention_test build/Release/attention_test 2>/dev/null | head -1)
  [[ -z $exe ]] && continue
  echo "== attention_test SGL_PREFILL_WGMMA=$m"
  out=$(SGL_PREFILL_WGMMA=$m "$exe" 2>&1); code=$?
  echo "$out" | grep -E "FAIL" | head -40
  echo "$out" | tail -1
  [[ $code -ne 0 ]] && fail=1
done
echo "== node GPU tests"
node --test --test-concurrency=1 dist/test/gpu/*.test.js 2>&1 | grep -E "^# (tests|pass|fail|skipped)|^not ok|^ok|Error|error:|message:|expected:|actual:|PARITY" | head -60
[[ ${PIPESTATUS[0]} -ne 0 ]] && fail=1
echo "test:gpu: $([[ $fail -eq 0 ]] && echo PASS || echo FAIL)"
exit $fail
