// Batch invariance through the whole engine (TS front, native engine thread, scheduler): every fixture
// prompt's greedy output equals transformers' golden alone, and run concurrently with 15 other requests of
// other lengths, with chunked prefill off and on, and with a pool so small that requests get retracted.
// The other requests must also produce what they produce alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ServingEngine, type ServingEngineOptions } from '../../src/engine/engine.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';

interface Job {
  name: string;
  inputIds: number[];
  maxNewTokens: number;
  want?: number[]; // golden greedy ids
}

function otherJobs(vocab: number, count: number, seed: number): Job[] {
  let s = seed;
  const rnd = (n: number) => {
    // xorshift32 (an LCG's low bits would cycle with a short period)
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
  return Array.from({ length: count }, (_, i) => ({
    name: `other#${i}`,
    inputIds: Array.from({ length: 1 + rnd(60) }, () => 3 + rnd(vocab - 3)),
    maxNewTokens: 1 + rnd(30),
  }));
}

async function runAll(opts: ServingEngineOptions, jobs: Job[], concurrent: boolean): Promise<{ outs: number[][]; retractions: number; full: boolean }> {
  const engine = await ServingEngine.create({ randomSeed: 7, ...opts });
  try {
    const one = async (j: Job) => {
      const [final] = await engine.generateAll({ inputIds: j.inputIds, samplingParams: { temperature: 0, max_new_tokens: j.maxNewTokens, ignore_eos: true } });
      assert.equal(final!.finishReason?.type, 'length', `${j.name} finished by length`);
      return final!.outputIds;
    };
    const outs: number[][] = [];
    if (concurrent) outs.push(...(await Promise.all(jobs.map(one))));
    else for (const j of jobs) outs.push(await one(j));
    const st = engine.stats();
    const flushed = await engine.flushCache();
    const after = engine.stats();
    return { outs, retractions: st.totalRetractions, full: flushed && after.freePages === after.totalPages };
  } finally {
    await engine.close();
  }
}

for (const model of ['stories260k', 'qwen2-tiny']) {
  test(`${model}: golden greedy outputs alone, batched with 15 others (chunked off/on), and under retraction`, async () => {
    const golden = loadGolden(model);
    const modelPath = fixtureModelDir(model);
    const probe = await ServingEngine.create({ modelPath, maxTotalTokens: 64 });
    const vocab = probe.info.vocabSize;
    await probe.close();
    const goldenJobs: Job[] = golden.generate.map((g, i) => ({ name: `golden#${i}`, inputIds: g.input_ids, maxNewTokens: g.greedy_ids.length, want: g.greedy_ids }));
    const jobs = [...goldenJobs, ...otherJobs(vocab, 15, model.length)];

    const alone = await runAll({ modelPath, pageSize: 1, maxTotalTokens: 1024, chunkedPrefillSize: -1 }, jobs, false);
    jobs.forEach((j, i) => {
      if (j.want) assert.deepEqual(alone.outs[i], j.want, `${j.name} alone equals the golden`);
    });

    const longest = Math.max(...jobs.map((j) => j.inputIds.length + j.maxNewTokens));
    const configs: [string, ServingEngineOptions, boolean][] = [
      ['chunking off, page 1', { pageSize: 1, maxTotalTokens: 8192, chunkedPrefillSize: -1 }, false],
      ['chunks of 16, page 4, lpm', { pageSize: 4, maxTotalTokens: 8192, chunkedPrefillSize: 16, schedulePolicy: 'lpm' }, false],
      // Room for the longest request plus a little: the batch cannot all fit, so requests are retracted.
      ['small pool, chunks of 16, page 4', { pageSize: 4, maxTotalTokens: longest + 64, chunkedPrefillSize: 16 }, true],
    ];
    for (const [label, opts, expectRetraction] of configs) {
      const r = await runAll({ modelPath, maxRunningRequests: 32, ...opts }, jobs, true);
      jobs.forEach((j, i) => assert.deepEqual(r.outs[i], alone.outs[i], `${model} ${label}: ${j.name} equals its output alone`));
      if (expectRetraction) assert.ok(r.retractions > 0, `${label}: retraction happened (${r.retractions})`);
      assert.ok(r.full, `${label}: after flushCache every page is free`);
    }
  });
}
