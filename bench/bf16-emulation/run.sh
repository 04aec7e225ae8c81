#!/usr/bin/env bash
# Measures what bf16 activation storage alone costs against the fixtures' float32 goldens (cuda/NOTES.md,
# "Model parity"): builds the addon with llama-bf16-emulation.patch in a scratch copy of the tree, then runs
# measure.ts with every activation rounded, with none, with only the final hidden state, and with each
# single point left in float32. CPU only; a few seconds a configuration.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${SGL_EMU_DIR:-/tmp/sgl-bf16-emulation}
rm -rf "$work" && mkdir -p "$work"
git -C "$root" archive HEAD | tar -x -C "$work"
ln -s "$root/node_modules" "$work/node_modules"
(cd "$work" && git apply bench/bf16-emulation/llama-bf16-emulation.patch && npx cmake-js compile --out build >/dev/null)
(cd "$root" && npx tsc -p tsconfig.json)
export SGL_ADDON_PATH="$work/build/Release/sglang_native.node"
m() { node "$root/dist/bench/bf16-emulation/measure.js"; }
m
SGL_EMU_ALL=1 m
SGL_EMU_ALL=1 SGL_EMU_SKIP=emb,qkv,rope,attn,oproj,norm,res,mlp,down m   # only the final hidden state
for spare in res final qkv,rope qkv,rope,attn norm; do SGL_EMU_ALL=1 SGL_EMU_SKIP=$spare m; done
