// The CUDA backend end to end against transformers' goldens (skipped where no GPU is present; run on the GPU
// machine by `npm run test:gpu`): prompt and output logprobs within 0.1 of the goldens, and greedy ids equal
// while the golden's top-2 margin exceeds 0.05 (a flip is allowed up to 0.1: FLIP_MARGIN); batch invariance (each prompt alone vs with 15 others) and the
// radix cache (a cached prefix gives what a cold run gives) on the GPU. The largest errors are printed
// (PARITY lines).
// Why 0.1 and not 2e-2: the goldens are float32 compute on the bf16 weights, and the GPU stores activations in
// bf16 (as SGLang does). Rounding every activation to bf16 in the float32 CPU backend (bench/bf16-emulation)
// gives 0.080 on qwen2-tiny's prompt logprobs; the GPU gives 0.078 (stories260k: 0.046, its f32 weights rounded to bf16 as
// well; cuda/NOTES.md). No single rounding point dominates, so only f32 activations would reach 2e-2; a broken
// kernel shows as errors of order 1.
// The float32 runs (--dtype float32: the float32 CUDA backend, f32 activations, KV cache and weights, f32 math)
// are held to 2e-2, the issue's bound; f32 on both sides should leave ~1e-4 (the PARITY "float32" lines).
// qwen2-moe-tiny (Qwen2MoeForCausalLM, the MoE ops of cuda/moe.cu) runs both ways too, and with the expert
// distribution recorder on its router counts on CUDA must equal transformers' choices (the golden
// prefill_router_topk + decode_router_topk) exactly in float32, with CUDA graphs on (three concurrent requests:
// decode batches padded to 4, whose padding rows are routed but not counted) and off. In bf16 near-tied
// routing may flip (and a flipped choice can change the greedy path), so there only the totals are asserted
// (tokens x K per layer) and the count differences are printed (PARITY ... router counts).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ServingEngine } from '../../src/engine/engine.js';
import { cudaAvailable, loadAddon, type NativeEngineOptions, type NativeRequest, type NativeStepOutput } from '../../src/native/addon.js';
import { fixtureModelDir, loadGolden, type GoldenGenerate } from '../helpers/fixtures.js';

const skip = cudaAvailable(loadAddon()) ? false : 'no CUDA device';
const LOGPROB_TOL = 0.1;
const MARGIN = 0.05;
// A greedy token may differ from the golden where the golden's top-2 margin is at most FLIP_MARGIN: the bf16
// runs' logprob errors reach ~0.08 (above), so a choice that close is within them. The split-KV prefill
// (2026-12-07) flipped qwen2-tiny's 0.060 choice (prompt 2, token 1) both against the golden and between a
// cold and a cached prefill (different kernels), while its largest errors went down (prompt / output / cached
// 0.078 / 0.028 / 0.007 against 0.081 / 0.037 / 0.035 unsplit, H100). Comparing goes on past margins up to
// FLIP_MARGIN while the ids agree.
const FLIP_MARGIN = 0.1;
const F32_LOGPROB_TOL = 2e-2;
// qwen2-moe-tiny in bf16 only: 0.1 + 2% of |golden logprob|. A bf16-rounded hidden state can flip a near-tied
// router choice (hidden size 16, 8 experts: ties are common), and a token routed to another expert gets a
// different hidden state; the error that leaves is largest on very unlikely tokens (H200 and H100 runs on 2026-12-06
// measured 0.18 at one prompt position, -13.265 against -13.446). 2% leaves likely tokens (|lp| < 2) within
// ~0.14 and still fails any broken kernel (errors of order 1). float32 MoE stays at 2e-2 with exact router counts.
const MOE_BF16_LOGPROB_REL = 0.02;
const close = (a: number, b: number, tol = LOGPROB_TOL, rel = 0) => Math.abs(a - b) <= tol + rel * Math.abs(b);
const worst = new Map<string, number>();
function note(key: string, a: number, b: number): void {
  worst.set(key, Math.max(worst.get(key) ?? 0, Math.abs(a - b)));
}
process.on('exit', () => {
  for (const [k, v] of worst) console.log(`PARITY ${k} max |dlogprob| ${v.toFixed(4)}`);
});

/**
 * Checks one greedy run against the golden: ids equal up to the first position with margin <= MARGIN, or up to
 * a position where they differ with a margin <= FLIP_MARGIN.
 */
function checkGreedy(name: string, g: GoldenGenerate, ids: number[], lps: number[], tol = LOGPROB_TOL, tag = name.split(' ')[0], rel = 0): number {
  let compared = 0;
  for (let i = 0; i < g.greedy_ids.length && i < ids.length; i++) {
    if (ids[i] !== g.greedy_ids[i]) {
      assert.ok(g.greedy_top2_margin[i]! <= FLIP_MARGIN, `${name}: token ${i} is ${ids[i]}, golden ${g.greedy_ids[i]} (margin ${g.greedy_top2_margin[i]})`);
      break;
    }
    note(`${tag} output`, lps[i]!, g.greedy_logprobs[i]!);
    assert.ok(close(lps[i]!, g.greedy_logprobs[i]!, tol, rel), `${name}: output logprob ${i}: ${lps[i]} vs ${g.greedy_logprobs[i]}`);
    compared++;
    if (g.greedy_top2_margin[i]! <= MARGIN) break; // past a near-tie the golden path may legitimately differ
  }
  return compared;
}

/**
 * Every golden prompt of `fixture` through `engine`: prompt logprobs and the greedy continuation against the
 * goldens within `tol` (+ `rel` of the golden's magnitude); `tag` names the PARITY lines ("<fixture>" or
 * "<fixture> float32").
 */
async function checkFixture(engine: ServingEngine, fixture: string, tag: string, pageSize: number, tol: number, rel = 0): Promise<void> {
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
      assert.ok(close(lp as number, g.prompt_logprobs[i] as number, tol, rel), `${name}: prompt logprob ${i}: ${lp} vs ${g.prompt_logprobs[i]}`);
    });
    compared += checkGreedy(name, g, out!.outputIds, out!.outputTokenLogprobs!.map((t) => t[0] as number), tol, tag, rel);
  }
  assert.ok(compared >= golden.generate.length, 'compared at least one greedy token per prompt');
}

for (const fixture of ['stories260k', 'qwen2-tiny', 'qwen2-moe-tiny']) {
  test(`${fixture} on CUDA: prompt and output logprobs within ${LOGPROB_TOL}${fixture === 'qwen2-moe-tiny' ? ` + ${MOE_BF16_LOGPROB_REL}·|golden|` : ''} of the goldens, greedy ids match`, { skip }, async () => {
    for (const pageSize of [1, 16]) {
      const engine = await ServingEngine.create({ modelPath: fixtureModelDir(fixture), device: 'cuda', pageSize, maxTotalTokens: 8192, randomSeed: 1 });
      try {
        assert.equal(engine.info.backend, 'cuda');
        await checkFixture(engine, fixture, fixture, pageSize, LOGPROB_TOL, fixture === 'qwen2-moe-tiny' ? MOE_BF16_LOGPROB_REL : 0);
      } finally {
        await engine.close();
      }
    }
  });
}

for (const fixture of ['stories260k', 'qwen2-tiny', 'qwen2-moe-tiny']) {
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

// ---- qwen2-moe-tiny: the expert distribution recorder on CUDA ----------------------------------------------

interface ExpertRecord {
  numLayers: number;
  numExperts: number;
  topK: number;
  numPasses: number;
  logicalCount: Int32Array;
}
interface RecordingEngine {
  submit(r: NativeRequest): void;
  expertRecord(op: 'start' | 'stop' | 'dump'): Promise<ExpertRecord | null>;
  close(): Promise<void>;
}

/** A native engine on qwen2-moe-tiny on CUDA with the 'stat' recorder, and wait(rid) for a request's tokens. */
function moeEngine(opts: Partial<NativeEngineOptions>) {
  const { NativeEngine } = loadAddon();
  const done = new Map<number, { tokens: number[]; resolve?: (t: number[]) => void; finished?: boolean }>();
  const entry = (rid: number) => {
    let e = done.get(rid);
    if (!e) done.set(rid, (e = { tokens: [] }));
    return e;
  };
  const onStep = (o: NativeStepOutput): void => {
    for (let i = 0; i < o.n; i++) {
      const e = entry(Number(o.rid[i]));
      if (o.token[i] >= 0) e.tokens.push(o.token[i]);
      if (o.finish[i] !== 0) {
        e.finished = true;
        e.resolve?.(e.tokens);
      }
    }
  };
  const eng = new NativeEngine({
    modelPath: fixtureModelDir('qwen2-moe-tiny'), device: 'cuda', numPages: 512, pageSize: 4, chunkedPrefillSize: -1,
    maxPrefillTokens: 4096, maxRunningRequests: 8, disableRadixCache: true, schedulePolicy: 'fcfs', onStep,
    expertDistributionRecorderMode: 'stat', ...opts,
  } as NativeEngineOptions) as unknown as RecordingEngine;
  const wait = (rid: number): Promise<number[]> => {
    const e = entry(rid);
    return e.finished ? Promise.resolve(e.tokens) : new Promise((r) => (e.resolve = r));
  };
  return { eng, wait };
}

function moeRequest(rid: number, ids: number[], maxNewTokens: number): NativeRequest {
  return {
    rid, inputIds: Int32Array.from(ids), maxNewTokens, minNewTokens: 0, temperature: 1, topP: 1, topK: 1, minP: 0,
    frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, ignoreEos: true, stopTokenIds: new Int32Array(0),
    seed: null, returnLogprob: false, topLogprobsNum: 0, tokenIdsLogprob: null, logprobStartLen: -1,
  };
}

/** [L * E] totals of the golden router choices of one request run for its 24 greedy tokens. */
function goldenRouterCounts(g: GoldenGenerate, L: number, E: number): number[] {
  const c = new Array<number>(L * E).fill(0);
  g.prefill_router_topk!.forEach((perPos, l) => perPos.forEach((ks) => ks.forEach((e) => c[l * E + e]++)));
  for (const step of g.decode_router_topk!) step.forEach((ks, l) => ks.forEach((e) => c[l * E + e]++));
  return c;
}

for (const dtype of ['float32', 'bfloat16'] as const) {
  for (const graphs of [true, false]) {
    test(`qwen2-moe-tiny on CUDA (${dtype}, CUDA graphs ${graphs ? 'on' : 'off'}): the expert record counts transformers' router choices`, { skip }, async () => {
      const golden = loadGolden('qwen2-moe-tiny');
      const { eng, wait } = moeEngine({ dtype, disableCudaGraph: !graphs });
      try {
        await eng.expertRecord('start');
        // three concurrent requests: decode batches of 3 replay the graph captured for 4 (one padding row)
        golden.generate.forEach((g, i) => eng.submit(moeRequest(i + 1, g.input_ids, g.greedy_ids.length)));
        const outs = await Promise.all(golden.generate.map((_, i) => wait(i + 1)));
        const r = (await eng.expertRecord('dump'))!;
        const [L, E, K] = [r.numLayers, r.numExperts, r.topK];
        assert.deepEqual([L, E, K], [3, 8, 4]);
        const want = new Array<number>(L * E).fill(0);
        for (const g of golden.generate) goldenRouterCounts(g, L, E).forEach((v, i) => (want[i] += v));
        const got = Array.from(r.logicalCount);
        // every token of every request routed once per layer: prompt + 23 fed-back decode tokens
        const tokens = golden.generate.reduce((a, g) => a + g.input_ids.length + g.greedy_ids.length - 1, 0);
        for (let l = 0; l < L; l++) {
          const sum = got.slice(l * E, (l + 1) * E).reduce((a, b) => a + b, 0);
          assert.equal(sum, tokens * K, `layer ${l}: tokens x K counted (padding rows not counted)`);
        }
        const l1 = got.reduce((a, v, i) => a + Math.abs(v - want[i]!), 0);
        console.log(`PARITY qwen2-moe-tiny ${dtype} graphs ${graphs ? 'on' : 'off'} router counts: L1 distance ${l1} to the golden totals (of ${tokens * K * L} choices)`);
        if (dtype === 'float32') {
          outs.forEach((o, i) => assert.deepEqual(o, golden.generate[i]!.greedy_ids, `request ${i + 1}: greedy ids`));
          assert.deepEqual(got, want, 'float32 router counts equal the golden choices');
        }
      } finally {
        await eng.close();
      }
    });
  }
}
