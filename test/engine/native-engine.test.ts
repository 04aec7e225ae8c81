// The native serving engine (addon/napi/native_engine.cc) over the real stories260k model: golden greedy
// outputs under batching, batched step callbacks, prompt/output logprobs, abort, flushCache, close, argument
// checks, and that an engine never keeps Node alive once it is idle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  loadAddon,
  projectRoot,
  type NativeEngine,
  type NativeEngineOptions,
  type NativeRequest,
  type NativeStepOutput,
} from '../../src/native/addon.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';

const { NativeEngine: Engine } = loadAddon();
const golden = loadGolden('stories260k');
const modelPath = fixtureModelDir('stories260k');

interface Collected {
  rid: number;
  tokens: number[];
  logprobs: number[];
  top: { ids: number[]; logprobs: number[] }[];
  ids: number[][];
  finish: number;
  matchedStop: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  inputStart: number;
  inputLogprobs: number[];
  inputTop: { ids: number[]; logprobs: number[] };
  inputIds: number[];
}

/** Gathers onStep outputs per rid; wait(rid) resolves at the request's finishing event. */
class Collector {
  outputs: NativeStepOutput[] = [];
  errors: string[] = [];
  private reqs = new Map<number, { c: Collected; done: Promise<Collected>; resolve: (c: Collected) => void }>();
  /** Called for every event after it is recorded. */
  onEvent?: (c: Collected) => void;

  private entry(rid: number) {
    let e = this.reqs.get(rid);
    if (!e) {
      let resolve!: (c: Collected) => void;
      const done = new Promise<Collected>((r) => (resolve = r));
      const c: Collected = {
        rid, tokens: [], logprobs: [], top: [], ids: [], finish: 0, matchedStop: -1, promptTokens: 0,
        completionTokens: 0, cachedTokens: 0, inputStart: -1, inputLogprobs: [], inputTop: { ids: [], logprobs: [] }, inputIds: [],
      };
      e = { c, done, resolve };
      this.reqs.set(rid, e);
    }
    return e;
  }

  onStep = (out: NativeStepOutput): void => {
    this.outputs.push(out);
    if (out.error !== undefined) this.errors.push(out.error);
    for (const k of ['topIndptr', 'idsIndptr', 'inputIndptr', 'inputTopIndptr', 'inputIdsIndptr'] as const) {
      assert.equal(out[k].length, out.n + 1, `${k} has n+1 entries`);
    }
    for (let i = 0; i < out.n; i++) {
      const e = this.entry(out.rid[i]);
      const c = e.c;
      assert.equal(c.finish, 0, `rid ${c.rid}: event after its finish`);
      if (out.token[i] >= 0) {
        c.tokens.push(out.token[i]);
        c.logprobs.push(out.logprob[i]);
      }
      c.top.push({
        ids: Array.from(out.topIds.subarray(out.topIndptr[i], out.topIndptr[i + 1])),
        logprobs: Array.from(out.topLogprobs.subarray(out.topIndptr[i], out.topIndptr[i + 1])),
      });
      c.ids.push(Array.from(out.idsLogprobs.subarray(out.idsIndptr[i], out.idsIndptr[i + 1])));
      if (out.inputStart[i] >= 0) {
        c.inputStart = out.inputStart[i];
        c.inputLogprobs.push(...out.inputLogprobs.subarray(out.inputIndptr[i], out.inputIndptr[i + 1]));
        c.inputTop.ids.push(...out.inputTopIds.subarray(out.inputTopIndptr[i], out.inputTopIndptr[i + 1]));
        c.inputTop.logprobs.push(...out.inputTopLogprobs.subarray(out.inputTopIndptr[i], out.inputTopIndptr[i + 1]));
        c.inputIds.push(...out.inputIdsLogprobs.subarray(out.inputIdsIndptr[i], out.inputIdsIndptr[i + 1]));
      }
      c.finish = out.finish[i];
      c.matchedStop = out.matchedStop[i];
      c.promptTokens = out.promptTokens[i];
      c.completionTokens = out.completionTokens[i];
      c.cachedTokens = out.cachedTokens[i];
      this.onEvent?.(c);
      if (c.finish !== 0) e.resolve(c);
    }
  };

  wait(rid: number): Promise<Collected> {
    return this.entry(rid).done;
  }
  get(rid: number): Collected {
    return this.entry(rid).c;
  }
}

function makeEngine(col: Collector, opts: Partial<NativeEngineOptions> = {}): NativeEngine {
  return new Engine({
    modelPath,
    numPages: 256,
    pageSize: 1,
    chunkedPrefillSize: -1,
    maxPrefillTokens: 4096,
    maxRunningRequests: 32,
    disableRadixCache: false,
    schedulePolicy: 'fcfs',
    onStep: col.onStep,
    ...opts,
  });
}

function greedy(rid: number, ids: number[], maxNewTokens: number, extra: Partial<NativeRequest> = {}): NativeRequest {
  return {
    rid,
    inputIds: Int32Array.from(ids),
    maxNewTokens,
    minNewTokens: 0,
    temperature: 1,
    topP: 1,
    topK: 1,
    minP: 0,
    frequencyPenalty: 0,
    presencePenalty: 0,
    repetitionPenalty: 1,
    ignoreEos: true,
    stopTokenIds: new Int32Array(0),
    seed: null,
    returnLogprob: false,
    topLogprobsNum: 0,
    tokenIdsLogprob: null,
    logprobStartLen: -1,
    ...extra,
  };
}

function assertPagesAccounted(eng: NativeEngine): void {
  const s = eng.stats();
  assert.equal(s.running, 0);
  assert.equal(s.waiting, 0);
  assert.equal(s.livePages, 0);
  assert.equal(s.freePages + s.cachedPages, s.totalPages, `free ${s.freePages} + cached ${s.cachedPages} != ${s.totalPages}`);
}

const long = golden.generate[1].input_ids; // 13 tokens
// stories260k decodes a token in ~0.1 ms while the JS thread competes with the engine for 2 cores, so a
// reaction from onStep can land 100+ tokens later: requests meant to be interrupted are given 480 tokens.
const short = golden.generate[2].input_ids; // 4 tokens
const LONG_RUN = 480;

for (const cfg of [
  { pageSize: 1, numPages: 320, schedulePolicy: 'fcfs' as const, chunkedPrefillSize: -1 },
  { pageSize: 4, numPages: 80, schedulePolicy: 'lpm' as const, chunkedPrefillSize: 8 },
]) {
  test(`16 requests at once reproduce the golden greedy ids (page size ${cfg.pageSize}, ${cfg.schedulePolicy})`, async () => {
    const col = new Collector();
    const eng = makeEngine(col, cfg);
    try {
      const want = new Map<number, number[]>();
      for (let r = 0; r < 16; r++) {
        const g = golden.generate[r % golden.generate.length];
        want.set(r, g.greedy_ids);
        eng.submit(greedy(r, g.input_ids, g.greedy_ids.length));
      }
      const s0 = eng.stats(); // (the first requests may already be done: the engine thread does not wait)
      assert.ok(s0.waiting + s0.running <= 16 && s0.waiting + s0.running > 0);
      const results = await Promise.all([...want.keys()].map((r) => col.wait(r)));
      for (const c of results) {
        assert.deepEqual(c.tokens, want.get(c.rid), `rid ${c.rid} greedy ids`);
        assert.equal(c.finish, 2, 'finish length');
        assert.equal(c.completionTokens, 24);
        assert.equal(c.promptTokens, golden.generate[c.rid % golden.generate.length].input_ids.length);
      }
      assert.deepEqual(col.errors, []);
      assertPagesAccounted(eng);
      const s = eng.stats();
      assert.ok(s.steps > 0 && s.steps < 16 * 25, `steps ${s.steps}`);
      // a finished prompt's prefix is reused from the radix cache
      const g = golden.generate[0];
      eng.submit(greedy(99, g.input_ids, 3));
      const again = await col.wait(99);
      assert.deepEqual(again.tokens, g.greedy_ids.slice(0, 3));
      assert.ok(again.cachedTokens >= g.input_ids.length - cfg.pageSize, `cached ${again.cachedTokens}`);
      assertPagesAccounted(eng);
    } finally {
      await eng.close();
    }
    assert.equal(eng.stats().freePages, eng.stats().totalPages);
  });
}

test('one onStep call carries the events of several requests; logprobs and prompt logprobs are packed', async () => {
  const col = new Collector();
  const eng = makeEngine(col, { pageSize: 4, numPages: 64 });
  try {
    const g = golden.generate[0];
    const opts = { returnLogprob: true, topLogprobsNum: 3, tokenIdsLogprob: Int32Array.from([5, 7]), logprobStartLen: 0 };
    for (let r = 0; r < 4; r++) eng.submit(greedy(100 + r, g.input_ids, 6, opts));
    const cs = await Promise.all([0, 1, 2, 3].map((r) => col.wait(100 + r)));
    const multi = col.outputs.filter((o) => new Set(o.rid).size >= 2);
    assert.ok(multi.length >= 5, `${multi.length} batched outputs`);
    const dec = col.outputs.find((o) => o.n === 4 && o.numTokens === 4);
    assert.ok(dec, 'a decode step of all four requests');
    assert.equal(dec.batchSize, 4);
    assert.ok(dec.forwardUs > 0 && dec.scheduleUs >= 0 && dec.sampleUs >= 0);
    for (const c of cs) {
      assert.deepEqual(c.tokens, g.greedy_ids.slice(0, 6));
      c.logprobs.forEach((lp, k) => assert.ok(Math.abs(lp - g.greedy_logprobs[k]) < 1e-4, `logprob ${k}: ${lp} vs ${g.greedy_logprobs[k]}`));
      // output top logprobs: 3 per token, the first one is the greedy token
      assert.equal(c.top.length, 6);
      c.top.forEach((t, k) => {
        assert.equal(t.ids.length, 3);
        assert.equal(t.ids[0], c.tokens[k]);
        assert.ok(Math.abs(t.logprobs[0] - c.logprobs[k]) < 1e-6);
      });
      c.ids.forEach((v) => assert.equal(v.length, 2));
      // prompt logprobs: position 0 has none (NaN), then transformers' values
      assert.equal(c.inputStart, 0);
      assert.equal(c.inputLogprobs.length, g.input_ids.length);
      assert.ok(Number.isNaN(c.inputLogprobs[0]));
      for (let i = 1; i < g.input_ids.length; i++) {
        const want = g.prompt_logprobs[i] as number;
        assert.ok(Math.abs(c.inputLogprobs[i] - want) < 1e-4, `prompt logprob ${i}: ${c.inputLogprobs[i]} vs ${want}`);
      }
      assert.equal(c.inputTop.ids.length, g.input_ids.length * 3);
      assert.equal(c.inputTop.ids[0], -1);
      assert.equal(c.inputIds.length, g.input_ids.length * 2);
    }
  } finally {
    await eng.close();
  }
});

test('a prefill-only request (maxNewTokens 0) reports its prompt logprobs from logprobStartLen in one event', async () => {
  const col = new Collector();
  const eng = makeEngine(col, { pageSize: 4, numPages: 64, chunkedPrefillSize: 5 });
  try {
    const g = golden.generate[1];
    eng.submit(greedy(3, g.input_ids, 0, { returnLogprob: true, topLogprobsNum: 2, logprobStartLen: 2 }));
    const c = await col.wait(3);
    assert.equal(c.finish, 2);
    assert.deepEqual(c.tokens, []);
    assert.equal(c.top.length, 1, 'a single event');
    assert.equal(c.completionTokens, 0);
    assert.equal(c.inputStart, 2);
    assert.equal(c.inputLogprobs.length, g.input_ids.length - 2);
    c.inputLogprobs.forEach((lp, j) => {
      const want = g.prompt_logprobs[2 + j] as number;
      assert.ok(Math.abs(lp - want) < 1e-4, `prompt logprob ${2 + j}: ${lp} vs ${want}`);
    });
    assert.equal(c.inputTop.ids.length, 2 * (g.input_ids.length - 2));
    assertPagesAccounted(eng);
  } finally {
    await eng.close();
  }
});

test('abort mid-decode ends the request with an abort event and returns its pages; flushCache empties the cache', async () => {
  const col = new Collector();
  const eng = makeEngine(col, { pageSize: 1, numPages: 128 });
  try {
    col.onEvent = (c) => {
      if (c.rid === 7 && c.tokens.length === 3 && c.finish === 0) eng.abort(7);
    };
    eng.submit(greedy(7, short, LONG_RUN));
    const c = await col.wait(7);
    assert.equal(c.finish, 3, 'abort');
    assert.equal(c.matchedStop, -1);
    assert.ok(c.tokens.length >= 3 && c.tokens.length < LONG_RUN, `${c.tokens.length} tokens before the abort`);
    assert.equal(c.completionTokens, c.tokens.length);
    assertPagesAccounted(eng);
    eng.abort(12345); // unknown rid: nothing happens

    // a finished request leaves its prefix in the radix cache
    eng.submit(greedy(8, long, 4));
    await col.wait(8);
    assertPagesAccounted(eng);
    assert.ok(eng.stats().cachedPages > 0, 'cached pages after a finished request');
    assert.equal(await eng.flushCache(), true);
    const s = eng.stats();
    assert.equal(s.freePages, s.totalPages);
    assert.equal(s.cachedPages, 0);
    assert.deepEqual(col.errors, []);
  } finally {
    await eng.close();
  }
});

test('flushCache resolves false while a request waits or runs', async () => {
  const col = new Collector();
  const eng = makeEngine(col, { pageSize: 4, numPages: 160 });
  try {
    eng.submit(greedy(1, short, LONG_RUN));
    assert.equal(await eng.flushCache(), false, 'queued behind the submit: the request waits');
    let flushed: Promise<boolean> | undefined;
    col.onEvent = (c) => {
      if (c.rid === 1 && c.tokens.length >= 2 && c.finish === 0 && !flushed) {
        flushed = eng.flushCache();
        eng.abort(1);
      }
    };
    const c = await col.wait(1);
    assert.equal(c.finish, 3);
    assert.ok(flushed);
    assert.equal(await flushed, false, 'while it runs');
    assertPagesAccounted(eng);
    assert.equal(await eng.flushCache(), true);
    // submit + abort in one tick (the engine thread may still take the submit alone and run a step)
    eng.submit(greedy(2, short, LONG_RUN));
    eng.abort(2);
    const c2 = await col.wait(2);
    assert.equal(c2.finish, 3);
    assert.ok(c2.tokens.length < LONG_RUN);
    assertPagesAccounted(eng);
  } finally {
    await eng.close();
  }
});

test('close() while requests run aborts every one of them before it resolves; submit after close throws', async () => {
  const col = new Collector();
  const eng = makeEngine(col, { pageSize: 4, numPages: 512, maxRunningRequests: 3 });
  const rids = [1, 2, 3, 4, 5];
  for (const r of rids) eng.submit(greedy(r, short, LONG_RUN));
  await new Promise<void>((resolve) => {
    col.onEvent = (c) => {
      if (c.tokens.length >= 2) resolve();
    };
  });
  eng.submit(greedy(6, long, 10)); // still queued when close() begins
  let closed = false;
  const done = rids.concat(6).map((r) =>
    col.wait(r).then((c) => {
      assert.equal(closed, false, `rid ${r} finished after close resolved`);
      return c;
    }),
  );
  const p = eng.close();
  const again = eng.close();
  assert.throws(() => eng.submit(greedy(9, long, 4)), { name: 'Error', message: /engine is closed/ });
  await p;
  closed = true;
  await again;
  const cs = await Promise.all(done);
  for (const c of cs) {
    assert.equal(c.finish, 3, `rid ${c.rid} aborted`);
    assert.ok(c.tokens.length < LONG_RUN);
  }
  assert.throws(() => eng.submit(greedy(10, long, 4)), /engine is closed/);
  await assert.rejects(eng.flushCache(), /engine is closed/);
  assert.throws(() => eng.info(), /engine is closed/);
  eng.abort(1); // no-op after close
  await eng.close(); // closing again resolves at once
  const s = eng.stats();
  assert.equal(s.freePages, s.totalPages);
  assert.equal(s.running + s.waiting, 0);
});

test('bad options and requests give TypeErrors naming the field; a bad model path an Error naming it', async () => {
  const col = new Collector();
  const base: NativeEngineOptions = {
    modelPath, numPages: 32, pageSize: 4, chunkedPrefillSize: -1, maxPrefillTokens: 1024, maxRunningRequests: 8,
    disableRadixCache: false, schedulePolicy: 'fcfs', onStep: col.onStep,
  };
  const bad = (patch: Record<string, unknown>, field: string) =>
    assert.throws(() => new Engine({ ...base, ...patch } as NativeEngineOptions), (e: Error) => {
      assert.equal(e.name, 'TypeError', `${field}: ${e.message}`);
      assert.match(e.message, new RegExp(`^${field}\\b`));
      return true;
    });
  bad({ modelPath: 3 }, 'modelPath');
  bad({ numPages: 0 }, 'numPages');
  bad({ numPages: 1.5 }, 'numPages');
  bad({ pageSize: undefined }, 'pageSize');
  bad({ chunkedPrefillSize: 0 }, 'chunkedPrefillSize');
  bad({ maxPrefillTokens: '1' }, 'maxPrefillTokens');
  bad({ maxRunningRequests: -2 }, 'maxRunningRequests');
  bad({ disableRadixCache: 1 }, 'disableRadixCache');
  bad({ schedulePolicy: 'lifo' }, 'schedulePolicy');
  bad({ randomSeed: 0.5 }, 'randomSeed');
  bad({ onStep: 'no' }, 'onStep');
  assert.throws(() => new (Engine as unknown as new () => NativeEngine)(), TypeError);
  assert.throws(() => new Engine({ ...base, modelPath: '/nonexistent/sgl-model' }), (e: Error) => {
    assert.equal(e.name, 'Error');
    assert.match(e.message, /\/nonexistent\/sgl-model/);
    return true;
  });

  const eng = new Engine({ ...base, randomSeed: 42 });
  try {
    assert.equal(eng.info().vocabSize, 512);
    assert.equal(eng.info().pageSize, 4);
    assert.equal(eng.info().numPages, 32);
    const req = greedy(1, [1, 2, 3], 4);
    const badReq = (patch: Record<string, unknown>, field: string) =>
      assert.throws(() => eng.submit({ ...req, ...patch } as NativeRequest), (e: Error) => {
        assert.equal(e.name, 'TypeError', `${field}: ${e.message}`);
        assert.match(e.message, new RegExp(`^${field}\\b`));
        return true;
      });
    badReq({ rid: 1.5 }, 'rid');
    badReq({ rid: 2 ** 60 }, 'rid');
    badReq({ rid: undefined }, 'rid');
    badReq({ inputIds: [1, 2, 3] }, 'inputIds');
    badReq({ inputIds: new Int32Array(0) }, 'inputIds');
    badReq({ inputIds: Int32Array.from([1, 512]) }, 'inputIds');
    badReq({ maxNewTokens: -1 }, 'maxNewTokens');
    badReq({ minNewTokens: null }, 'minNewTokens');
    badReq({ temperature: 'hot' }, 'temperature');
    badReq({ temperature: NaN }, 'temperature');
    badReq({ topP: 0 }, 'topP');
    badReq({ topK: 2.5 }, 'topK');
    badReq({ minP: 2 }, 'minP');
    badReq({ frequencyPenalty: Infinity }, 'frequencyPenalty');
    badReq({ presencePenalty: undefined }, 'presencePenalty');
    badReq({ repetitionPenalty: 0 }, 'repetitionPenalty');
    badReq({ ignoreEos: 1 }, 'ignoreEos');
    badReq({ stopTokenIds: Int32Array.from([-1]) }, 'stopTokenIds');
    badReq({ stopTokenIds: null }, 'stopTokenIds');
    badReq({ logitBiasIds: Int32Array.from([3]) }, 'logitBiasValues');
    badReq({ logitBiasIds: Int32Array.from([3]), logitBiasValues: new Float32Array(2) }, 'logitBiasValues');
    badReq({ logitBiasIds: Int32Array.from([3]), logitBiasValues: [1] }, 'logitBiasValues');
    badReq({ logitBiasValues: new Float32Array(1) }, 'logitBiasIds');
    badReq({ seed: 'x' }, 'seed');
    badReq({ returnLogprob: undefined }, 'returnLogprob');
    badReq({ topLogprobsNum: -1 }, 'topLogprobsNum');
    badReq({ tokenIdsLogprob: [1] }, 'tokenIdsLogprob');
    badReq({ logprobStartLen: -2 }, 'logprobStartLen');
    assert.throws(() => eng.submit(undefined as unknown as NativeRequest), TypeError);
    assert.throws(() => eng.abort('x' as unknown as number), { name: 'TypeError', message: /^rid/ });
    assert.equal(eng.stats().waiting, 0, 'nothing was queued by the bad submits');

    // a well-formed request with every optional part still runs
    eng.submit({
      ...req, rid: 2, seed: 5, temperature: 0.8, topK: -1, topP: 0.9, logitBiasIds: Int32Array.from([3]),
      logitBiasValues: Float32Array.from([-100]), stopTokenIds: Int32Array.from([2]), ignoreEos: false,
    });
    const c = await col.wait(2);
    assert.ok(c.finish === 1 || c.finish === 2);
    assert.ok(!c.tokens.includes(3), 'logit bias -100 bans token 3');
  } finally {
    await eng.close();
  }
});

test('a process that never closes its engines exits by itself once they are idle', () => {
  const addonUrl = pathToFileURL(path.join(projectRoot(), 'dist', 'src', 'native', 'addon.js')).href;
  const script = `
    import { loadAddon } from ${JSON.stringify(addonUrl)};
    const { NativeEngine } = loadAddon();
    const opts = (onStep) => ({ modelPath: ${JSON.stringify(modelPath)}, numPages: 64, pageSize: 4, chunkedPrefillSize: -1,
      maxPrefillTokens: 1024, maxRunningRequests: 8, disableRadixCache: false, schedulePolicy: 'fcfs', onStep });
    new NativeEngine(opts(() => {})); // idle, never used
    { new NativeEngine(opts(() => {})); } globalThis.gc?.(); // dropped (maybe collected) while open
    const eng = new NativeEngine(opts((out) => {
      if (out.finish[0] !== 0) console.log('finished', out.completionTokens[0]);
    }));
    eng.submit({ rid: 1, inputIds: Int32Array.from([1, 403, 407]), maxNewTokens: 8, minNewTokens: 0, temperature: 1,
      topP: 1, topK: 1, minP: 0, frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, ignoreEos: true,
      stopTokenIds: new Int32Array(0), seed: null, returnLogprob: false, topLogprobsNum: 0, tokenIdsLogprob: null,
      logprobStartLen: -1 });
  `;
  const t0 = Date.now();
  const res = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
    env: process.env,
  });
  const ms = Date.now() - t0;
  assert.equal(res.signal, null, `killed after ${ms} ms (the process hung): ${res.stderr}`);
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout, /finished 8/, 'the request ran to completion before exit');
  assert.ok(ms < 10_000, `took ${ms} ms`);
});
