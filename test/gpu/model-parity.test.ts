// The CUDA backend end to end against transformers' goldens (skipped where no GPU is present; run on the GPU
// machine by `npm run test:gpu`): prompt and output logprobs within 0.1 of the goldens, and greedy ids equal
// while the golden's top-2 margin exceeds 0.05; batch invariance (each prompt alone vs with 15 others) and the
// radix cache (a cached prefix gives what a cold run gives) on the GPU. The largest errors are printed
// (PARITY lines).
// Why 0.1 and not 2e-2: the goldens are float32 compute on the bf16 weights, and the GPU stores activations in
// bf16 (as SGLang does). Rounding every activation to bf16 in the float32 CPU backend (bench/bf16-emulation)
// gives 0.080 on qwen2-tiny's prompt logprobs; the GPU gives 0.078 (stories260k: 0.046, its f32 weights rounded to bf16 as
// well; cuda/NOTES.md). No single rounding point dominates, so only f32 activations would reach 2e-2; a broken
// kernel shows as errors of order 1.
// The float32 runs (--dtype float32: the float32 CUDA backend, f32 activations, KV cache and weights, f32 math)
// are held to 2e-2, the bound; f32 on both sides should leave ~1e-4 (the PARITY "float32" lines).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ServingEngine } from '../../src/engine/engine.js';
import { cudaAvailable, loadAddon } from '../../src/native/addon.js';
import { fixtureModelDir, loadGolden, type GoldenGenerate } from '../helpers/fixtures.js';

const skip = cudaAvailable(loadAddon()) ? false : 'no CUDA device';
const LOGPROB_TOL = 0.1;
const LOGPROB_REL = 0;
const MARGIN = 0.05;
const F32_LOGPROB_TOL = 2e-2;
const close = (a: number, b: number, tol = LOGPROB_TOL) => Math.abs(a - b) <= tol + LOGPROB_REL * Math.abs(b);
const worst = new Map<string, number>();
function note(key: string, a: number, b: number): void {
  worst.set(key, Math.max(worst.get(key) ?? 0, Math.abs(a - b)));
}
process.on('exit', () => {
  for (const [k, v] of worst) console.log(`PARITY ${k} max |dlogprob| ${v.toFixed(4)}`);
});

/** Checks one greedy run against the golden: ids equal up to the first position with margin <= MARGIN. */
function checkGreedy(name: string, g: GoldenGenerate, ids: number[], lps: number[], tol = LOGPROB_TOL, tag = name.split(' ')[0]): number {
  let compared = 0;
  for (let i = 0; i < g.greedy_ids.length && i < ids.length; i++) {
    if (ids[i] !== g.greedy_ids[i]) {
      assert.ok(g.greedy_top2_margin[i]! <= MARGIN, `${name}: token ${i} is ${ids[i]}, golden ${g.greedy_ids[i]} (margin ${g.greedy_top2_margin[i]})`);
      break;
    }
    note(`${tag} output`, lps[i]!, g.greedy_logprobs[i]!);
    assert.ok(close(lps[i]!, g.greedy_logprobs[i]!, tol), `${name}: output logprob ${i}: ${lps[i]} vs ${g.greedy_logprobs[i]}`);
    compared++;
    if (g.greedy_top2_margin[i]! <= MARGIN) break; // past a near-tie the golden path may legitimately differ
  }
  return compared;
}

/**
 * Every golden prompt of `fixture` through `engine`: prompt logprobs and the greedy continuation against the
 * goldens within `tol`; `tag` names the PARITY lines ("<fixture>" or "<fixture> float32").
 */
async function checkFixture(engine: ServingEngine, fixture: string, tag: string, pageSize: number, tol: number): Promise<void> {
  const golden = loadGolden(fixture);
  let compared = 0;
  for (const [k, g] of golden.generate.entries()) {
    const [out] = await engine.generateAll({
      inputIds: g.input_ids,
      samplingParams: { temperature: 0, max_new_tokens: g.greedy_ids.length, ignore_eos: true },
      returnLogprob: true,
      logprobStartLen: 0,
    });
    const name = `${tag} prompt ${k} (page ${pageSize})`;
    out!.inputTokenLogprobs!.forEach(([lp], i) => {
      if (i === 0) return;
      note(`${tag} prompt`, lp as number, g.prompt_logprobs[i] as number);
      assert.ok(close(lp as number, g.prompt_logprobs[i] as number, tol), `${name}: prompt logprob ${i}: ${lp} vs ${g.prompt_logprobs[i]}`);
    });
    compared += checkGreedy(name, g, out!.outputIds, out!.outputTokenLogprobs!.map((t) => t[0] as number), tol, tag);
  }
  assert.ok(compared >= golden.generate.length, 'compared at least one greedy token per prompt');
}

for (const fixture of ['stories260k', 'qwen2-tiny']) {
  test(`${fixture} on CUDA: prompt and output logprobs within ${LOGPROB_TOL} of the goldens, greedy ids match`, { skip }, async () => {
    for (const pageSize of [1, 16]) {
      const engine = await ServingEngine.create({ modelPath: fixtureModelDir(fixture), device: 'cuda', pageSize, maxTotalTokens: 8192, randomSeed: 1 });
      try {
        assert.equal(engine.info.backend, 'cuda');
        await checkFixture(engine, fixture, fixture, pageSize, LOGPROB_TOL);
      } finally {
        await engine.close();
      }
    }
  });
}

for (const fixture of ['stories260k', 'qwen2-tiny']) {
  test(`${fixture} on CUDA with --dtype float32: prompt and output logprobs within ${F32_LOGPROB_TOL} of the goldens, greedy ids match`, { skip }, async () => {
    for (const [pageSize, dtype] of [[1, 'float32'], [16, 'float']] as const) {
      const engine = await ServingEngine.create({ modelPath: fixtureModelDir(fixture), device: 'cuda', dtype, pageSize, maxTotalTokens: 8192, randomSeed: 1 });
      try {
        assert.equal(engine.info.backend, 'cuda');
        assert.equal(engine.info.activationDtype, 'float32', 'the float32 CUDA backend runs');
        await checkFixture(engine, fixture, `${fixture} float32`, pageSize, F32_LOGPROB_TOL);
      } finally {
        await engine.close();
      }
    }
  });
}

test('batch invariance on CUDA: each qwen2-tiny prompt alone and among 15 other requests (chunked prefill)', { skip }, async () => {
  const golden = loadGolden('qwen2-tiny');
  const engine = await ServingEngine.create({ modelPath: fixtureModelDir('qwen2-tiny'), device: 'cuda', pageSize: 4, maxTotalTokens: 16384, chunkedPrefillSize: 64, randomSeed: 1 });
  try {
    const greedy = (n: number) => ({ temperature: 0, max_new_tokens: n, ignore_eos: true });
    const run = async (ids: number[], n: number) => {
      const [o] = await engine.generateAll({ inputIds: ids, samplingParams: greedy(n), returnLogprob: true });
      return { ids: o!.outputIds, lps: o!.outputTokenLogprobs!.map((t) => t[0] as number) };
    };
    const alone: { ids: number[]; lps: number[] }[] = [];
    for (const g of golden.generate) alone.push(await run(g.input_ids, g.greedy_ids.length));
    let s = 12345;
    const rnd = (n: number) => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const others = Array.from({ length: 15 }, () => Array.from({ length: 1 + rnd(200) }, () => 3 + rnd(150000)));
    const together = await Promise.all([
      ...golden.generate.map((g) => run(g.input_ids, g.greedy_ids.length)),
      ...others.map((ids) => run(ids, 1 + rnd(30))),
    ]);
    golden.generate.forEach((g, k) => {
      const a = alone[k]!, b = together[k]!;
      checkGreedy(`prompt ${k} batched`, { ...g, greedy_ids: a.ids, greedy_logprobs: a.lps }, b.ids, b.lps);
    });
  } finally {
    await engine.close();
  }
});

test('radix cache on CUDA: a prompt whose prefix is cached gives what a cold engine gives', { skip }, async () => {
  const golden = loadGolden('qwen2-tiny');
  const g = golden.generate.reduce((a, b) => (b.input_ids.length > a.input_ids.length ? b : a));
  const greedy = { temperature: 0, max_new_tokens: 16, ignore_eos: true };
  const engine = await ServingEngine.create({ modelPath: fixtureModelDir('qwen2-tiny'), device: 'cuda', pageSize: 1, maxTotalTokens: 8192, randomSeed: 1 });
  try {
    const [cold] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy, returnLogprob: true });
    const [warm] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy, returnLogprob: true });
    assert.ok(warm!.cachedTokens > 0, 'the second run hit the cache');
    checkGreedy('cached', { ...g, greedy_ids: cold!.outputIds, greedy_logprobs: cold!.outputTokenLogprobs!.map((t) => t[0] as number), greedy_top2_margin: g.greedy_top2_margin.concat(Array(16).fill(1)) }, warm!.outputIds, warm!.outputTokenLogprobs!.map((t) => t[0] as number));
  } finally {
    await engine.close();
  }
});
