// Pooled requests on the CUDA backend (skipped where no GPU is present; run by `npm run test:gpu`): qwen2-tiny
// in embedding mode against the `encode` goldens, the XLM-R cross-encoder against its `rerank` logits and the
// Llama reward model against its `classify` scores, on the bf16 and the float32 tables; and one-token pooled
// prompts (decode-shaped steps: the CUDA-graph path where the model allows it) equal to the same prompts with
// graphs off. The largest errors are printed (PARITY lines).
// Tolerances: bf16 activations leave ~1e-2 relative on a hidden state (model-parity.test.ts says why), so the
// bf16 runs are held to a cosine >= 0.999 against transformers' normalised embedding and scores within
// 0.1 + 0.05 |score| (not measured on a GPU yet: loose); the float32 runs to 1e-3, as on the CPU. Graphs
// against eager steps of the same batch sizes: within 2e-2 (bf16 kernels may differ in order; a wrong row
// layout shows as errors of order 1).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { cudaAvailable, loadAddon, type NativeEngineOptions, type NativeRequest } from '../../src/native/addon.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';

const addon = loadAddon();
const skip = cudaAvailable(addon) ? false : 'no CUDA device';
const worst = new Map<string, number>();
function note(key: string, err: number): void {
  worst.set(key, Math.max(worst.get(key) ?? 0, err));
}
process.on('exit', () => {
  for (const [k, v] of worst) console.log(`PARITY pooled ${k} ${v.toExponential(3)}`);
});

function request(rid: number, ids: number[]): NativeRequest {
  return {
    rid, inputIds: Int32Array.from(ids), maxNewTokens: 0, minNewTokens: 0, temperature: 0, topP: 1, topK: -1, minP: 0,
    frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, ignoreEos: false, stopTokenIds: new Int32Array(0),
    seed: null, returnLogprob: false, topLogprobsNum: 0, tokenIdsLogprob: null, logprobStartLen: -1, pooled: true,
  };
}

/** Every prompt through a CUDA engine, all submitted at once; the rows in prompt order. */
async function pooledRows(model: string, prompts: number[][], opts: Partial<NativeEngineOptions> = {}): Promise<number[][]> {
  const rows = new Map<number, number[]>();
  const errors: string[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const eng = new addon.NativeEngine({
    modelPath: fixtureModelDir(model), device: 'cuda', numPages: 4096, pageSize: 16, chunkedPrefillSize: 8192,
    maxPrefillTokens: 16384, maxRunningRequests: 64, disableRadixCache: false, schedulePolicy: 'fcfs', ...opts,
    onStep: (out) => {
      if (out.error !== undefined) errors.push(out.error);
      for (let i = 0; i < out.n; i++) {
        if (out.finish[i] === 0) continue;
        assert.equal(out.finish[i], 2, `rid ${out.rid[i]} finished by length`);
        rows.set(out.rid[i], Array.from(out.embedding.subarray(out.embeddingIndptr[i], out.embeddingIndptr[i + 1])));
      }
      if (rows.size === prompts.length || errors.length) done();
    },
  });
  try {
    prompts.forEach((p, i) => eng.submit(request(i, p)));
    await finished;
    assert.deepEqual(errors, []);
    return prompts.map((_, i) => rows.get(i)!);
  } finally {
    await eng.close();
  }
}

const cosine = (a: number[], b: number[]) => {
  const dot = a.reduce((s, x, i) => s + x * b[i]!, 0);
  return dot / (Math.hypot(...a) * Math.hypot(...b));
};
/** Max elementwise error over the largest magnitude of `want` (at least 1: single scores near 0). */
const relErr = (got: number[], want: number[]) =>
  Math.max(...got.map((g, i) => Math.abs(g - want[i]!))) / Math.max(1, ...want.map(Math.abs));

for (const dtype of ['auto', 'float32'] as const) {
  const f32 = dtype === 'float32';
  const tag = f32 ? 'float32' : 'bf16';
  const scoreOk = (got: number, want: number) => Math.abs(got - want) <= (f32 ? 1e-3 : 0.1 + 0.05 * Math.abs(want));

  test(`qwen2-tiny isEmbedding on CUDA (${tag}): last-token hidden states against transformers'`, { skip }, async () => {
    const enc = loadGolden('qwen2-tiny').encode as { input_ids: number[]; embedding: number[]; raw_last_hidden: number[] }[];
    const rows = await pooledRows('qwen2-tiny', enc.map((e) => e.input_ids), { isEmbedding: true, dtype });
    enc.forEach((e, i) => {
      const row = rows[i]!;
      assert.equal(row.length, e.raw_last_hidden.length);
      const cos = cosine(row, e.embedding);
      note(`${tag} embedding 1-cos`, 1 - cos);
      note(`${tag} embedding rel`, relErr(row, e.raw_last_hidden));
      if (f32) assert.ok(relErr(row, e.raw_last_hidden) < 1e-3, `#${i}: relative error ${relErr(row, e.raw_last_hidden)}`);
      else assert.ok(cos >= 0.999, `#${i}: cosine ${cos}`);
    });
  });

  test(`xlmr-reranker-tiny and llama31-reward-tiny on CUDA (${tag}): rerank logits and reward scores`, { skip }, async () => {
    const pairs = loadGolden('xlmr-reranker-tiny').rerank as { input_ids: number[]; logit: number }[];
    const rr = await pooledRows('xlmr-reranker-tiny', pairs.map((p) => p.input_ids), { dtype });
    pairs.forEach((p, i) => {
      note(`${tag} rerank |d|`, Math.abs(rr[i]![0]! - p.logit));
      assert.ok(scoreOk(rr[i]![0]!, p.logit), `pair ${i}: ${rr[i]![0]} vs ${p.logit}`);
    });
    const cls = loadGolden('llama31-reward-tiny').classify as { input_ids: number[]; score: number }[];
    const sc = await pooledRows('llama31-reward-tiny', cls.map((c) => c.input_ids), { dtype });
    cls.forEach((c, i) => {
      note(`${tag} classify |d|`, Math.abs(sc[i]![0]! - c.score));
      assert.ok(scoreOk(sc[i]![0]!, c.score), `text ${i}: ${sc[i]![0]} vs ${c.score}`);
    });
  });
}

test('one-token pooled prompts on CUDA (decode-shaped steps) equal the same with CUDA graphs off', { skip }, async () => {
  const prompts = Array.from({ length: 12 }, (_, i) => [100 + 37 * i]);
  for (const [model, opts] of [['qwen2-tiny', { isEmbedding: true }], ['llama31-reward-tiny', {}]] as const) {
    // at most 4 a step, six steps: the first decode-shaped step of a size runs eagerly, the second captures
    // a graph (where the model replays graphs: not in embedding mode), later ones replay it
    const graphs = await pooledRows(model, [...prompts, ...prompts], { ...opts, maxRunningRequests: 4 });
    const eager = await pooledRows(model, prompts, { ...opts, maxRunningRequests: 4, disableCudaGraph: true });
    graphs.forEach((row, i) => {
      const want = eager[i % prompts.length]!;
      assert.equal(row.length, want.length);
      note(`${model} graphs vs eager rel`, relErr(row, want));
      assert.ok(relErr(row, want) < 2e-2, `${model} prompt ${i}: relative difference ${relErr(row, want)}`);
    });
  }
});
