// The MoE model's routing counters through the native engine (addon/engine/expert_recorder.cc): the counts of
// a request equal the router choices transformers made (golden prefill_router_topk + decode_router_topk),
// concurrent requests add up, an idle record is zeros, the per_pass / per_token modes and the window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadAddon, type NativeEngineOptions, type NativeRequest, type NativeStepOutput } from '../../src/native/addon.js';
import { fixtureModelDir, loadGolden, type GoldenGenerate } from '../helpers/fixtures.js';

const { NativeEngine: Engine } = loadAddon();
const golden = loadGolden('qwen2-moe-tiny');
const L = 3;
const E = 8;
const K = 4;

interface ExpertRecord {
  mode: string;
  recording: boolean;
  numLayers: number;
  numExperts: number;
  topK: number;
  numPasses: number;
  logicalCount: Int32Array;
  passIds: Float64Array;
  passCounts: Int32Array;
  passTokens: Int32Array;
  topkIds: Int32Array;
}
interface RecordingEngine {
  submit(r: NativeRequest): void;
  expertRecord(op: 'start' | 'stop' | 'dump' | 'dump_reset'): Promise<ExpertRecord | null>;
  info(): { numExperts: number; numExpertsPerTok: number; moeLayerIds: number[] };
  close(): Promise<void>;
}

/** An engine on qwen2-moe-tiny and a wait(rid) that resolves with the request's tokens at its end. */
function makeEngine(opts: Record<string, unknown> = {}) {
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
  const eng = new Engine({
    modelPath: fixtureModelDir('qwen2-moe-tiny'),
    numPages: 512,
    pageSize: 4,
    chunkedPrefillSize: -1,
    maxPrefillTokens: 4096,
    maxRunningRequests: 8,
    disableRadixCache: true, // cached prefix tokens would not be routed again
    schedulePolicy: 'fcfs',
    onStep,
    expertDistributionRecorderMode: 'stat',
    ...opts,
  } as unknown as NativeEngineOptions) as unknown as RecordingEngine;
  const wait = (rid: number): Promise<number[]> => {
    const e = entry(rid);
    return e.finished ? Promise.resolve(e.tokens) : new Promise((r) => (e.resolve = r));
  };
  return { eng, wait };
}

function greedy(rid: number, ids: number[], maxNewTokens: number): NativeRequest {
  return {
    rid, inputIds: Int32Array.from(ids), maxNewTokens, minNewTokens: 0, temperature: 1, topP: 1, topK: 1, minP: 0,
    frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, ignoreEos: true, stopTokenIds: new Int32Array(0),
    seed: null, returnLogprob: false, topLogprobsNum: 0, tokenIdsLogprob: null, logprobStartLen: -1,
  };
}

/** [L * E] totals of the golden router choices of one request with max_new_tokens 24. */
function goldenCounts(g: GoldenGenerate): number[] {
  const c = new Array<number>(L * E).fill(0);
  g.prefill_router_topk!.forEach((perPos, l) => perPos.forEach((ks) => ks.forEach((e) => c[l * E + e]++)));
  for (const step of g.decode_router_topk!) step.forEach((ks, l) => ks.forEach((e) => c[l * E + e]++));
  return c;
}

for (const overlap of [true, false]) {
  test(`stat: one request's counts equal transformers' router choices (overlap ${overlap})`, async () => {
    const { eng, wait } = makeEngine({ disableOverlapSchedule: !overlap });
    try {
      assert.deepEqual(eng.info().moeLayerIds, [0, 1, 2]);
      assert.equal(eng.info().numExperts, E);
      await eng.expertRecord('start');
      const g = golden.generate[0];
      eng.submit(greedy(1, g.input_ids, 24));
      assert.deepEqual(await wait(1), g.greedy_ids);
      assert.equal(await eng.expertRecord('stop'), null);
      const r = (await eng.expertRecord('dump'))!;
      assert.equal(r.mode, 'stat');
      assert.equal(r.recording, false);
      assert.deepEqual([r.numLayers, r.numExperts, r.topK], [L, E, K]);
      assert.equal(r.numPasses, 24); // the prefill and 23 decode steps
      assert.deepEqual(Array.from(r.logicalCount), goldenCounts(g));
      assert.equal(r.passCounts.length, 0);
    } finally {
      await eng.close();
    }
  });
}

test('stat: an idle record is zeros; two concurrent requests add up; start clears; stopped passes are not counted', async () => {
  const { eng, wait } = makeEngine();
  try {
    await eng.expertRecord('start');
    await eng.expertRecord('stop');
    const idle = (await eng.expertRecord('dump'))!;
    assert.equal(idle.numPasses, 0);
    assert.deepEqual(Array.from(idle.logicalCount), new Array(L * E).fill(0));

    eng.submit(greedy(5, golden.generate[0].input_ids, 24)); // not recording
    await wait(5);
    assert.deepEqual(Array.from((await eng.expertRecord('dump'))!.logicalCount), new Array(L * E).fill(0));

    await eng.expertRecord('start');
    const [a, b] = [golden.generate[1], golden.generate[2]];
    eng.submit(greedy(6, a.input_ids, 24));
    eng.submit(greedy(7, b.input_ids, 24));
    assert.deepEqual(await wait(6), a.greedy_ids);
    assert.deepEqual(await wait(7), b.greedy_ids);
    const r = (await eng.expertRecord('dump'))!;
    assert.equal(r.recording, true);
    const want = goldenCounts(a).map((v, i) => v + goldenCounts(b)[i]);
    assert.deepEqual(Array.from(r.logicalCount), want);

    await eng.expertRecord('start'); // clears
    assert.deepEqual(Array.from((await eng.expertRecord('dump'))!.logicalCount), new Array(L * E).fill(0));
  } finally {
    await eng.close();
  }
});

test('dump_reset under traffic: the dumps taken while a request runs add up to its counts exactly (none lost, none twice)', async () => {
  const { eng, wait } = makeEngine();
  try {
    await eng.expertRecord('start');
    const g = golden.generate[0];
    let finished = false;
    eng.submit(greedy(1, g.input_ids, 24));
    const done = wait(1).then((t) => {
      finished = true;
      return t;
    });
    const sum = new Array<number>(L * E).fill(0);
    let dumps = 0;
    let passes = 0;
    while (!finished) {
      const r = (await eng.expertRecord('dump_reset'))!;
      assert.equal(r.recording, true); // dump_reset leaves recording on
      r.logicalCount.forEach((v, i) => (sum[i]! += v));
      passes += r.numPasses;
      dumps++;
      await new Promise((res) => setTimeout(res, 1));
    }
    assert.deepEqual(await done, g.greedy_ids);
    await eng.expertRecord('stop');
    const last = (await eng.expertRecord('dump_reset'))!;
    assert.equal(last.recording, false);
    last.logicalCount.forEach((v, i) => (sum[i]! += v));
    passes += last.numPasses;
    assert.ok(dumps >= 2, `only ${dumps} dumps ran during the request`);
    assert.equal(passes, 24);
    assert.deepEqual(sum, goldenCounts(g));
    const after = (await eng.expertRecord('dump'))!;
    assert.equal(after.numPasses, 0); // cleared by the last dump_reset
    assert.deepEqual(Array.from(after.logicalCount), new Array(L * E).fill(0));
  } finally {
    await eng.close();
  }
});

test('per_token: the prefill pass records transformers\' choices per layer and token; per-pass counts sum up', async () => {
  const { eng, wait } = makeEngine({ expertDistributionRecorderMode: 'per_token' });
  try {
    await eng.expertRecord('start');
    const g = golden.generate[2];
    eng.submit(greedy(1, g.input_ids, 24));
    await wait(1);
    const r = (await eng.expertRecord('dump'))!;
    assert.equal(r.mode, 'per_token');
    assert.equal(r.numPasses, 24);
    assert.equal(r.passIds.length, 24);
    for (let i = 1; i < r.passIds.length; i++) assert.ok(r.passIds[i] > r.passIds[i - 1], 'pass ids ascend');
    assert.deepEqual(Array.from(r.passTokens), [g.input_ids.length, ...new Array(23).fill(1)]);
    const T0 = g.input_ids.length;
    const prefill = Array.from(r.topkIds.subarray(0, L * T0 * K));
    assert.deepEqual(prefill, g.prefill_router_topk!.flat(2));
    // decode pass s (s = 1..23): one token, [L, 1, K]
    let at = L * T0 * K;
    for (let s = 0; s < 23; s++, at += L * K) assert.deepEqual(Array.from(r.topkIds.subarray(at, at + L * K)), g.decode_router_topk![s].flat());
    const sums = new Array<number>(L * E).fill(0);
    for (let p = 0; p < r.numPasses; p++) {
      let total = 0;
      for (let i = 0; i < L * E; i++) {
        sums[i] += r.passCounts[p * L * E + i];
        total += r.passCounts[p * L * E + i];
      }
      assert.equal(total, r.passTokens[p] * K * L, `pass ${p}: tokens x K x MoE layers`);
    }
    assert.deepEqual(sums, Array.from(r.logicalCount));
  } finally {
    await eng.close();
  }
});

test('per_pass with a window of 5 passes keeps the last 5', async () => {
  const { eng, wait } = makeEngine({ expertDistributionRecorderMode: 'per_pass', expertDistributionRecorderBufferSize: 5 });
  try {
    await eng.expertRecord('start');
    eng.submit(greedy(1, golden.generate[0].input_ids, 24));
    await wait(1);
    const r = (await eng.expertRecord('dump'))!;
    assert.equal(r.numPasses, 5);
    assert.equal(r.passCounts.length, 5 * L * E);
    assert.equal(r.passTokens.length, 0);
    const total = Array.from(r.logicalCount).reduce((a, b) => a + b, 0);
    assert.equal(total, 5 * K * L); // five one-token decode passes
  } finally {
    await eng.close();
  }
});

test('expertRecord without a recorder mode is a clear error; bad modes and sizes are TypeErrors', async () => {
  const { eng } = makeEngine({ expertDistributionRecorderMode: undefined });
  try {
    assert.throws(() => eng.expertRecord('start'), /expert distribution recording is off: launch with --expert-distribution-recorder-mode/);
  } finally {
    await eng.close();
  }
  assert.throws(() => makeEngine({ expertDistributionRecorderMode: 'sometimes' }), /expertDistributionRecorderMode/);
  assert.throws(() => makeEngine({ expertDistributionRecorderBufferSize: 0 }), /expertDistributionRecorderBufferSize/);
});

test('a dense model with a recorder mode records nothing (no experts), without error', async () => {
  const eng = new Engine({
    modelPath: fixtureModelDir('stories260k'), numPages: 64, pageSize: 4, chunkedPrefillSize: -1, maxPrefillTokens: 1024,
    maxRunningRequests: 4, disableRadixCache: false, schedulePolicy: 'fcfs', onStep: () => {},
    expertDistributionRecorderMode: 'stat',
  } as unknown as NativeEngineOptions) as unknown as RecordingEngine;
  try {
    assert.equal(eng.info().numExperts, 0);
    await eng.expertRecord('start');
    const r = (await eng.expertRecord('dump'))!;
    assert.equal(r.numExperts, 0);
    assert.equal(r.logicalCount.length, 0);
  } finally {
    await eng.close();
  }
});

test('decoder_sparse_step and mlp_only_layers pick the dense layers (which then need dense MLP weights)', () => {
  const src = fixtureModelDir('qwen2-moe-tiny');
  const cfg = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  const load = (patch: Record<string, unknown>) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sgl-moe-'));
    try {
      for (const f of readdirSync(src)) if (f !== 'config.json') symlinkSync(path.join(src, f), path.join(dir, f));
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, ...patch }));
      return () => new Engine({
        modelPath: dir, numPages: 16, pageSize: 4, chunkedPrefillSize: -1, maxPrefillTokens: 64, maxRunningRequests: 1,
        disableRadixCache: true, schedulePolicy: 'fcfs', onStep: () => {},
      });
    } finally {
      setTimeout(() => rmSync(dir, { recursive: true, force: true }), 0).unref();
    }
  };
  // every second layer sparse: layer 0 is dense, and the fixture has no dense MLP there
  assert.throws(load({ decoder_sparse_step: 2 }), /model\.layers\.0\.mlp\.(gate|down)_proj\.weight/);
  assert.throws(load({ mlp_only_layers: [2] }), /model\.layers\.2\.mlp\.(gate|down)_proj\.weight/);
  assert.throws(load({ num_experts_per_tok: 9 }), /num_experts_per_tok 9 exceeds num_experts 8/);
});
