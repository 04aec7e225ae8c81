// `npm run bench:cpu`: CPU speed of the model core on a random-weight model with Qwen2.5-0.5B-Instruct's
// exact architecture (bf16): prefill tokens/s (512-token prompt), decode tokens/s at batch 1 and 8, the
// memcpy and read-only bandwidth of this machine in the same run, and the fraction of each that batch-1
// decode reaches (decode only reads weights, so the read sweep is its real floor).
import os from 'node:os';
import path from 'node:path';
import { loadAddon } from '../src/native/addon.js';
import { PagePool } from '../src/engine/page-pool.js';
import { SequenceKv, runStep } from '../src/engine/step-runner.js';
import { projectRoot } from '../src/native/addon.js';
import { ensureRandomModel } from './random-model.js';

const addon = loadAddon();
const shape = 'qwen2.5-0.5b-instruct';
const dir = ensureRandomModel(shape, path.join(projectRoot(), 'bench', 'models', shape));
const pageSize = 16;
const numPages = 512;
const model = new addon.NativeModel({ modelPath: dir, numPages, pageSize });
const info = model.info();
const V = info.vocabSize;
const pool = new PagePool(numPages);
const randIds = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % V);

const memcpyGBs = addon.cpuMemcpyBandwidthGBs(512 << 20, 5);
const readGBs = addon.cpuReadBandwidthGBs(1024 << 20, 3);

// Prefill: a 512-token prompt in one step (best of 3).
let prefillSecs = Infinity;
for (let rep = 0; rep < 3; rep++) {
  const seq = new SequenceKv(pool, pageSize);
  const t0 = performance.now();
  runStep(model, V, [{ seq, tokens: randIds(512, rep), logits: 'last' }]);
  prefillSecs = Math.min(prefillSecs, (performance.now() - t0) / 1000);
  seq.release();
}

function decodeTokensPerSec(batch: number, steps: number, context: number): number {
  const seqs = Array.from({ length: batch }, () => new SequenceKv(pool, pageSize));
  runStep(model, V, seqs.map((seq, b) => ({ seq, tokens: randIds(context, b), logits: 'last' as const })));
  runStep(model, V, seqs.map((seq) => ({ seq, tokens: [1], logits: 'last' as const }))); // warm-up
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) runStep(model, V, seqs.map((seq) => ({ seq, tokens: [(s * 31) % V], logits: 'last' as const })));
  const secs = (performance.now() - t0) / 1000;
  for (const seq of seqs) seq.release();
  return (batch * steps) / secs;
}

const decode1 = decodeTokensPerSec(1, 16, 128);
const decode8 = decodeTokensPerSec(8, 8, 128);
model.close();

// Bytes streamed per decode step: every weight once (tied embeddings are read as the lm_head).
const bytesPerToken = info.weightBytes;
const decodeGBs = (bytesPerToken * decode1) / 1e9;
const rows: [string, string][] = [
  ['machine', `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length} threads`],
  ['model', `${shape} shape, random bf16 weights, ${(info.weightBytes / 1e6).toFixed(0)} MB`],
  ['prefill 512 tokens', `${(512 / prefillSecs).toFixed(1)} tokens/s`],
  ['decode batch 1 (ctx 128)', `${decode1.toFixed(2)} tokens/s`],
  ['decode batch 8 (ctx 128)', `${decode8.toFixed(2)} tokens/s`],
  ['memcpy bandwidth (bytes copied/s)', `${memcpyGBs.toFixed(2)} GB/s`],
  ['read bandwidth (bytes read/s)', `${readGBs.toFixed(2)} GB/s`],
  ['batch-1 decode weight stream', `${decodeGBs.toFixed(2)} GB/s = ${((100 * decodeGBs) / memcpyGBs).toFixed(0)}% of memcpy, ${((100 * decodeGBs) / readGBs).toFixed(0)}% of read bandwidth`],
];
console.log('| measure | value |\n|---|---|');
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
