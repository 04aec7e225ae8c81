// Pooled (non-generative) requests through the native engine (addon/napi/native_engine.cc): qwen2-tiny in
// embedding mode (isEmbedding: the last token's final-norm hidden state) against transformers' `encode`
// goldens, alone, batched, chunked and from the radix cache; the XLM-R cross-encoder against its `rerank`
// logits (one whole-sequence step each, never chunked, never cached); the Llama reward model against its
// `classify` scores; and requests of the wrong kind refused without disturbing the engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  loadAddon,
  type NativeEngine,
  type NativeEngineOptions,
  type NativeRequest,
  type NativeStepOutput,
} from '../../src/native/addon.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';

const { NativeEngine: Engine } = loadAddon();

interface Pooled {
  rid: number;
  finish: number;
  token: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  embedding: number[];
  events: number;
}

/** Gathers the pooled events per rid; wait(rid) resolves at the request's (single) finishing event. */
class Collector {
  outputs: NativeStepOutput[] = [];
  errors: string[] = [];
  private waiters = new Map<number, { done: Promise<Pooled>; resolve: (p: Pooled) => void }>();
  private got = new Map<number, Pooled>();

  private waiter(rid: number) {
    let w = this.waiters.get(rid);
    if (!w) {
      let resolve!: (p: Pooled) => void;
      const done = new Promise<Pooled>((r) => (resolve = r));
      w = { done, resolve };
      this.waiters.set(rid, w);
    }
    return w;
  }

  onStep = (out: NativeStepOutput): void => {
    this.outputs.push(out);
    if (out.error !== undefined) this.errors.push(out.error);
    assert.equal(out.embeddingIndptr.length, out.n + 1, 'embeddingIndptr has n+1 entries');
    assert.equal(out.embedding.length, out.embeddingIndptr[out.n], 'embedding holds every row');
    for (let i = 0; i < out.n; i++) {
      const rid = out.rid[i];
      const prev = this.got.get(rid);
      const p: Pooled = {
        rid,
        finish: out.finish[i],
        token: out.token[i],
        promptTokens: out.promptTokens[i],
        completionTokens: out.completionTokens[i],
        cachedTokens: out.cachedTokens[i],
        embedding: Array.from(out.embedding.subarray(out.embeddingIndptr[i], out.embeddingIndptr[i + 1])),
        events: (prev?.events ?? 0) + 1,
      };
      this.got.set(rid, p);
      if (p.finish !== 0) this.waiter(rid).resolve(p);
    }
  };

  wait(rid: number): Promise<Pooled> {
    return this.waiter(rid).done;
  }
}

function makeEngine(model: string, col: Collector, opts: Partial<NativeEngineOptions> = {}): NativeEngine {
  return new Engine({
    modelPath: fixtureModelDir(model),
    numPages: 1024,
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

function request(rid: number, ids: number[], extra: Partial<NativeRequest> = {}): NativeRequest {
  return {
    rid,
    inputIds: Int32Array.from(ids),
    maxNewTokens: 0,
    minNewTokens: 0,
    temperature: 0,
    topP: 1,
    topK: -1,
    minP: 0,
    frequencyPenalty: 0,
    presencePenalty: 0,
    repetitionPenalty: 1,
    ignoreEos: false,
    stopTokenIds: new Int32Array(0),
    seed: null,
    returnLogprob: false,
    topLogprobsNum: 0,
    tokenIdsLogprob: null,
    logprobStartLen: -1,
    pooled: true,
    ...extra,
  };
}

const pooled = (rid: number, ids: number[]) => request(rid, ids);

let nextRid = 1;
/** Submits every prompt at once (one synchronous loop) and waits for all of them. */
async function runAll(eng: NativeEngine, col: Collector, prompts: number[][]): Promise<Pooled[]> {
  const rids = prompts.map(() => nextRid++);
  prompts.forEach((p, i) => eng.submit(pooled(rids[i]!, p)));
  return Promise.all(rids.map((r) => col.wait(r)));
}

async function runOneByOne(eng: NativeEngine, col: Collector, prompts: number[][]): Promise<Pooled[]> {
  const out: Pooled[] = [];
  for (const p of prompts) out.push(...(await runAll(eng, col, [p])));
  return out;
}

function assertPooledEvent(p: Pooled, promptLen: number, width: number): void {
  assert.equal(p.events, 1, `rid ${p.rid}: one event`);
  assert.equal(p.finish, 2, `rid ${p.rid}: finish length`);
  assert.equal(p.token, -1);
  assert.equal(p.promptTokens, promptLen);
  assert.equal(p.completionTokens, 0);
  assert.equal(p.embedding.length, width, `rid ${p.rid}: row width`);
}

function assertClose(got: number[], want: number[], tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]!) <= tol, `${what}[${i}]: ${g} vs ${want[i]} (tol ${tol})`));
}

/** Max elementwise error relative to the largest magnitude of `want`. */
function relErr(got: number[], want: number[]): number {
  const scale = Math.max(...want.map(Math.abs));
  return Math.max(...got.map((g, i) => Math.abs(g - want[i]!))) / scale;
}

function l2normalise(v: number[]): number[] {
  const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return v.map((x) => x / n);
}

async function assertPoolFree(eng: NativeEngine): Promise<void> {
  assert.equal(await eng.flushCache(), true, 'flushCache while idle');
  const s = eng.stats();
  assert.equal(s.running, 0);
  assert.equal(s.waiting, 0);
  assert.equal(s.livePages, 0);
  assert.equal(s.freePages, s.totalPages, `free ${s.freePages} of ${s.totalPages} pages after flushCache`);
}

// ---------------------------------------------------------------------------------------------------------
// qwen2-tiny, embedding mode

interface EncodeGolden { text: string; input_ids: number[]; embedding: number[]; raw_last_hidden: number[] }
const encodes = loadGolden('qwen2-tiny').encode as EncodeGolden[];

for (const [label, opts] of [
  ['page 1, no chunking', { pageSize: 1, chunkedPrefillSize: -1 }],
  ['page 4, chunks of 5', { pageSize: 4, chunkedPrefillSize: 5 }],
  ['page 4, chunks of 5, no overlap', { pageSize: 4, chunkedPrefillSize: 5, disableOverlapSchedule: true }],
] as [string, Partial<NativeEngineOptions>][]) {
  test(`qwen2-tiny isEmbedding (${label}): last-token hidden states equal transformers', alone, batched and cached`, async () => {
    const col = new Collector();
    const eng = makeEngine('qwen2-tiny', col, { isEmbedding: true, ...opts });
    try {
      const info = eng.info();
      assert.equal(info.isGeneration, false);
      assert.equal(info.poolingKind, 'embedding');
      assert.equal(info.embeddingDim, info.hiddenSize);
      const prompts = encodes.map((e) => e.input_ids);
      // The step budget. Steps are counted with stats().steps (every forward), not from the outputs: an
      // output's numTokens is the step launched in the engine-loop iteration that posted its events (with
      // overlap, the step after the one that computed them), and an iteration without events posts nothing,
      // so the outputs show only some steps (with overlap possibly none with tokens: a pooled request has
      // only its finishing event, and once it is the last one running nothing is launched beside it).
      const chunk = opts.chunkedPrefillSize ?? -1;
      const budget = chunk > 0 ? chunk : 4096; // makeEngine's maxPrefillTokens
      const forwards = async (run: () => Promise<Pooled[]>): Promise<[Pooled[], number]> => {
        const s0 = eng.stats().steps; // the snapshot is taken before the events of its iteration are posted
        const got = await run();
        return [got, eng.stats().steps - s0];
      };
      const computed = (ps: Pooled[]) => ps.reduce((s, p) => s + p.promptTokens - p.cachedTokens, 0);
      const alone: Pooled[] = [];
      for (const p of prompts) {
        // Alone, a request takes exactly ceil(tokens to compute / budget) steps: fewer means a step above it.
        const [[r], n] = await forwards(() => runAll(eng, col, [p]));
        assert.equal(n, Math.ceil(computed([r!]) / budget), `${p.length}-token prompt (${r!.cachedTokens} cached) alone: steps of at most ${budget} tokens`);
        alone.push(r!);
      }
      encodes.forEach((e, i) => {
        const p = alone[i]!;
        assertPooledEvent(p, e.input_ids.length, info.hiddenSize);
        const err = relErr(p.embedding, e.raw_last_hidden);
        assert.ok(err < 1e-3, `"${e.text.slice(0, 20)}": relative error ${err} vs raw_last_hidden`);
        assertClose(l2normalise(p.embedding), e.embedding, 1e-4, `"${e.text.slice(0, 20)}" normalised`);
      });
      const [batched, nBatched] = await forwards(() => runAll(eng, col, prompts));
      assert.ok(nBatched >= Math.ceil(computed(batched) / budget), `batched: ${computed(batched)} tokens in ${nBatched} steps of at most ${budget}`);
      batched.forEach((p, i) => {
        assertPooledEvent(p, prompts[i]!.length, info.hiddenSize);
        assertClose(p.embedding, alone[i]!.embedding, 1e-5, `batched #${i} vs alone`);
      });
      // The same prompts again: their prefixes come from the radix cache (at least the last token is computed).
      const [again, nAgain] = await forwards(() => runAll(eng, col, prompts));
      assert.ok(nAgain >= Math.ceil(computed(again) / budget), `cached: ${computed(again)} tokens in ${nAgain} steps of at most ${budget}`);
      again.forEach((p, i) => {
        const len = prompts[i]!.length;
        const P = info.pageSize;
        const want = Math.floor((len - 1) / P) * P;
        assert.equal(p.cachedTokens, want, `#${i}: cached tokens`);
        assertClose(p.embedding, alone[i]!.embedding, 1e-5, `cached #${i} vs alone`);
      });
      assert.ok(again.some((p) => p.cachedTokens > 0), 'some prefix was reused');
      // The steps the outputs do show (see above) are within the budget too.
      const over = col.outputs.map((o) => o.numTokens).filter((t) => t > budget);
      assert.deepEqual(over, [], `no step above the budget of ${budget} tokens`);
      assert.deepEqual(col.errors, []);
      await assertPoolFree(eng);
    } finally {
      await eng.close();
    }
  });
}

test('qwen2-tiny: wrong-kind requests are refused with an Error and the engine keeps serving', async () => {
  const col = new Collector();
  const gen = makeEngine('qwen2-tiny', col, { numPages: 256 });
  try {
    const info = gen.info();
    assert.equal(info.isGeneration, true);
    assert.equal(info.poolingKind, 'none');
    assert.equal(info.embeddingDim, 0);
    const ids = encodes[0]!.input_ids;
    assert.throws(() => gen.submit(pooled(nextRid++, ids)), (e: unknown) => e instanceof Error && /is not an embedding model/.test(e.message));
    const rid = nextRid++;
    gen.submit(request(rid, ids, { pooled: false, maxNewTokens: 2, topK: 1 }));
    const c = await col.wait(rid);
    assert.equal(c.completionTokens, 2);
    assert.equal(c.embedding.length, 0, 'no row on a generation event');
  } finally {
    await gen.close();
  }
  const col2 = new Collector();
  const emb = makeEngine('qwen2-tiny', col2, { isEmbedding: true, numPages: 256 });
  try {
    const ids = encodes[1]!.input_ids;
    assert.throws(() => emb.submit(request(nextRid++, ids, { pooled: false, maxNewTokens: 2 })),
      (e: unknown) => e instanceof Error && /is not a generation model/.test(e.message));
    assert.throws(() => emb.submit(request(nextRid++, ids, { pooled: undefined, maxNewTokens: 2 })), /is not a generation model/);
    const [p] = await runAll(emb, col2, [ids]);
    assertPooledEvent(p!, ids.length, emb.info().hiddenSize);
    assert.ok(relErr(p!.embedding, encodes[1]!.raw_last_hidden) < 1e-3);
    assert.deepEqual(col2.errors, []);
    await assertPoolFree(emb);
  } finally {
    await emb.close();
  }
});

// ---------------------------------------------------------------------------------------------------------
// xlmr-reranker-tiny: the cross-encoder

interface RerankGolden { query: string; document: string; input_ids: number[]; logit: number }
const pairs = loadGolden('xlmr-reranker-tiny').rerank as RerankGolden[];
const RERANK_TOL = 1e-3;

test('xlmr-reranker-tiny: rerank logits equal transformers\', alone and all in one step; never cached', async () => {
  const col = new Collector();
  const eng = makeEngine('xlmr-reranker-tiny', col, { pageSize: 4, numPages: 256, disableOverlapSchedule: true });
  try {
    const info = eng.info();
    assert.equal(info.isGeneration, false);
    assert.equal(info.poolingKind, 'rerank');
    assert.equal(info.embeddingDim, 1);
    const prompts = pairs.map((p) => p.input_ids);
    const alone = await runOneByOne(eng, col, prompts);
    pairs.forEach((g, i) => {
      assertPooledEvent(alone[i]!, g.input_ids.length, 1);
      assert.ok(Math.abs(alone[i]!.embedding[0]! - g.logit) < RERANK_TOL, `pair ${i}: ${alone[i]!.embedding[0]} vs ${g.logit}`);
      assert.equal(alone[i]!.cachedTokens, 0);
    });
    assert.equal(eng.stats().freePages, eng.stats().totalPages, 'an encoder request frees its pages when it finishes');
    // All pairs in one step. The engine thread wakes at the first submit and may take it alone, so a long
    // blocker (a 500-token sequence: milliseconds) goes first, and the pairs are submitted while it runs:
    // they queue up and are admitted together in the next step. Without overlap a step's events come out
    // with its own batch size. (A thread starved past the pause may split them: tried up to three times.)
    let together = false;
    for (let attempt = 0; attempt < 3 && !together; attempt++) {
      const blocker = nextRid++;
      eng.submit(pooled(blocker, Array.from({ length: 3 }, () => prompts[3]!).flat().slice(0, 500)));
      await new Promise((r) => setTimeout(r, 2));
      const from = col.outputs.length;
      const all = await runAll(eng, col, prompts);
      await col.wait(blocker);
      all.forEach((p, i) => {
        assert.ok(Math.abs(p.embedding[0]! - pairs[i]!.logit) < RERANK_TOL, `batched pair ${i}: ${p.embedding[0]} vs ${pairs[i]!.logit}`);
        assert.equal(p.cachedTokens, 0, `batched pair ${i}: never cached`);
      });
      const rids = all.map((p) => p.rid);
      together = col.outputs.slice(from).some((o) => rids.every((r) => o.rid.includes(r)) && o.batchSize >= rids.length);
    }
    assert.ok(together, 'all pairs finished in one step of batch size 4');
    assert.equal(eng.stats().cachedPages, 0, 'nothing in the radix cache');
    assert.deepEqual(col.errors, []);
    await assertPoolFree(eng);
  } finally {
    await eng.close();
  }
});

for (const overlap of [true, false]) {
  test(`xlmr-reranker-tiny: a chunk budget below the longest pair still encodes whole sequences (overlap ${overlap})`, async () => {
    const col = new Collector();
    const longest = Math.max(...pairs.map((p) => p.input_ids.length));
    const eng = makeEngine('xlmr-reranker-tiny', col, { pageSize: 1, numPages: 512, chunkedPrefillSize: 16, disableOverlapSchedule: !overlap });
    try {
      const prompts = pairs.map((p) => p.input_ids);
      const all = await runAll(eng, col, [...prompts, ...prompts]);
      all.forEach((p, i) => {
        const g = pairs[i % pairs.length]!;
        assertPooledEvent(p, g.input_ids.length, 1);
        assert.ok(Math.abs(p.embedding[0]! - g.logit) < RERANK_TOL, `pair ${i}: ${p.embedding[0]} vs ${g.logit}`);
        assert.equal(p.cachedTokens, 0);
      });
      assert.ok(col.outputs.some((o) => o.numTokens === longest), `the ${longest}-token pair ran whole in one step`);
      // A step holds more than one pair only within the budget (a longer one runs first, alone).
      for (const o of col.outputs) assert.ok(o.batchSize <= 1 || o.numTokens <= 16, `batch ${o.batchSize} of ${o.numTokens} tokens`);
      assert.deepEqual(col.errors, []);
      assert.equal(eng.stats().freePages, eng.stats().totalPages);
      await assertPoolFree(eng);
    } finally {
      await eng.close();
    }
  });
}

test('xlmr-reranker-tiny: a generation request is refused; pooled ones still run', async () => {
  const col = new Collector();
  const eng = makeEngine('xlmr-reranker-tiny', col, { numPages: 256 });
  try {
    assert.throws(() => eng.submit(request(nextRid++, pairs[0]!.input_ids, { pooled: false, maxNewTokens: 4 })),
      (e: unknown) => e instanceof Error && /XLMRobertaForSequenceClassification is not a generation model/.test(e.message));
    const [p] = await runAll(eng, col, [pairs[0]!.input_ids]);
    assert.ok(Math.abs(p!.embedding[0]! - pairs[0]!.logit) < RERANK_TOL);
    assert.deepEqual(col.errors, []);
  } finally {
    await eng.close();
  }
});

// ---------------------------------------------------------------------------------------------------------
// llama31-reward-tiny: LlamaForSequenceClassification

interface ClassifyGolden { text: string; input_ids: number[]; add_special_tokens: boolean; score: number }
const classifies = loadGolden('llama31-reward-tiny').classify as ClassifyGolden[];

test('llama31-reward-tiny: reward scores equal transformers\', alone and batched, chunked', async () => {
  for (const opts of [{ pageSize: 1 }, { pageSize: 4, chunkedPrefillSize: 7 }] as Partial<NativeEngineOptions>[]) {
    const col = new Collector();
    const eng = makeEngine('llama31-reward-tiny', col, { numPages: 512, ...opts });
    try {
      const info = eng.info();
      assert.equal(info.isGeneration, false);
      assert.equal(info.poolingKind, 'classify');
      assert.equal(info.embeddingDim, 1);
      const prompts = classifies.map((c) => c.input_ids);
      const alone = await runOneByOne(eng, col, prompts);
      const batched = await runAll(eng, col, prompts);
      classifies.forEach((c, i) => {
        for (const [what, p] of [['alone', alone[i]!], ['batched', batched[i]!]] as const) {
          assertPooledEvent(p, c.input_ids.length, 1);
          assert.ok(Math.abs(p.embedding[0]! - c.score) < 1e-3, `${what} text ${i}: ${p.embedding[0]} vs ${c.score}`);
        }
      });
      assert.deepEqual(col.errors, []);
      await assertPoolFree(eng);
    } finally {
      await eng.close();
    }
  }
});

// The last layer on the pooled rows alone (llama.cc prune_last_layer, on by default) against every layer on
// every token: the same rows, for a batch of prompts of different lengths, the embedding model and the
// reward model. The CPU backend computes each query row of the attention on its own, so the two agree to
// rounding.
test('pruneLastLayer: the last layer on the pooled rows alone gives what the whole layer gives', async () => {
  for (const [model, extra] of [
    ['qwen2-tiny', { isEmbedding: true }],
    ['llama31-reward-tiny', {}],
  ] as [string, Partial<NativeEngineOptions>][]) {
    const prompts = model === 'qwen2-tiny' ? encodes.map((e) => e.input_ids) : classifies.map((c) => c.input_ids);
    const rows: number[][][] = [];
    for (const prune of [true, false]) {
      const col = new Collector();
      const eng = makeEngine(model, col, { numPages: 512, disableRadixCache: true, pruneLastLayer: prune, ...extra });
      try {
        rows.push((await runAll(eng, col, prompts)).map((p) => p.embedding));
        assert.deepEqual(col.errors, []);
        await assertPoolFree(eng);
      } finally {
        await eng.close();
      }
    }
    rows[0]!.forEach((got, i) => {
      const err = relErr(got, rows[1]![i]!);
      assert.ok(err < 1e-5, `${model} prompt ${i}: pruned vs whole last layer, relative error ${err}`);
    });
  }
});
