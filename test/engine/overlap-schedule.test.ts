// The overlap schedule (default: step n+1 planned and built while step n runs) against
// --disable-overlap-schedule on the same mixed workload: seeded sampling with top-k / top-p / min-p and
// penalties, stop tokens, min_new_tokens, logprobs with top-N and token ids, prompt logprobs, n > 1,
// chunked prefill, a small KV pool (so the overlapped planner must drain before retracting). Every request
// must give the same ids, logprobs and finish reasons in both modes, and no page may stay held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ServingEngine, type GenerateChunk, type GenerateRequest } from '../../src/engine/engine.js';

function workload(vocab: number): GenerateRequest[] {
  let s = 777;
  const rnd = (n: number) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
  const shared = Array.from({ length: 24 }, () => 3 + rnd(vocab - 3));
  const reqs: GenerateRequest[] = [];
  for (let i = 0; i < 24; i++) {
    const len = 4 + rnd(40);
    const inputIds = rnd(2) ? shared.slice(0, Math.min(len, shared.length)) : [];
    while (inputIds.length < len) inputIds.push(3 + rnd(vocab - 3));
    const kind = i % 6;
    const samplingParams: Record<string, unknown> = { max_new_tokens: 4 + rnd(20), sampling_seed: 100 + i };
    if (kind === 0) samplingParams.temperature = 0;
    if (kind === 1) Object.assign(samplingParams, { temperature: 0.9, top_k: 20, top_p: 0.8, min_p: 0.02 });
    if (kind === 2) Object.assign(samplingParams, { temperature: 1.1, repetition_penalty: 1.2, frequency_penalty: 0.3, presence_penalty: 0.2 });
    if (kind === 3) Object.assign(samplingParams, { temperature: 0.7, stop_token_ids: [inputIds[0]!, inputIds[1]!], min_new_tokens: 2 });
    if (kind === 4) Object.assign(samplingParams, { temperature: 1, n: 2 });
    if (kind === 5) Object.assign(samplingParams, { temperature: 0, ignore_eos: true });
    reqs.push({
      rid: `q${i}`,
      inputIds,
      samplingParams,
      ...(i % 4 === 0 ? { returnLogprob: true, topLogprobsNum: 3, tokenIdsLogprob: [5, 7], logprobStartLen: i % 8 === 0 ? 1 : -1 } : {}),
    });
  }
  return reqs;
}

// Ids, finish reasons and the top-N ids compare exactly; logprobs within 2e-3 (a retraction recomputes KV
// as a prefill chunk instead of step by step, and the two modes retract at different steps).
interface Summary { ids: number[]; finish: unknown; topIds: number[][]; lps: number[] }
function summary(chunks: GenerateChunk[]): Summary[] {
  return chunks.map((c) => ({
    ids: c.outputIds,
    finish: c.finishReason,
    topIds: (c.outputTopLogprobs ?? []).map((row) => row.map((t) => t[1])),
    lps: [
      ...(c.outputTokenLogprobs ?? []).map((t) => t[0] ?? NaN),
      ...(c.outputTopLogprobs ?? []).flat().map((t) => t[0] ?? NaN),
      ...(c.outputTokenIdsLogprobs ?? []).flat().map((t) => t[0] ?? NaN),
      ...(c.inputTokenLogprobs ?? []).slice(1).map((t) => t[0] ?? NaN),
    ],
  }));
}

async function runAll(disableOverlapSchedule: boolean): Promise<{ results: Summary[][]; freeAfterFlush: boolean; retractions: number }> {
  const engine = await ServingEngine.create({
    pageSize: 4, maxTotalTokens: 160, chunkedPrefillSize: 16, maxRunningRequests: 16, schedulePolicy: 'fcfs', randomSeed: 5,
    disableOverlapSchedule,
  });
  try {
    const reqs = workload(engine.info.vocabSize);
    const results = await Promise.all(reqs.map((r) => engine.generateAll(r).then(summary)));
    const stats = engine.stats();
    await engine.flushCache();
    const after = engine.stats();
    return { results, freeAfterFlush: after.freePages === after.totalPages, retractions: stats.totalRetractions };
  } finally {
    await engine.close();
  }
}

test('overlap schedule: the same outputs as --disable-overlap-schedule on a mixed workload, no page held', async () => {
  const plain = await runAll(true);
  const overlapped = await runAll(false);
  assert.ok(plain.freeAfterFlush, 'pool full after flush (no overlap)');
  assert.ok(overlapped.freeAfterFlush, 'pool full after flush (overlap)');
  assert.ok(plain.retractions > 0 && overlapped.retractions > 0, `the pool is small enough to retract (${plain.retractions}, ${overlapped.retractions})`);
  let sampled = 0;
  for (let i = 0; i < plain.results.length; i++) {
    const [want, got] = [plain.results[i]!, overlapped.results[i]!];
    assert.equal(got.length, want.length, `request q${i}: samples`);
    for (let j = 0; j < want.length; j++) {
      const [w, g] = [want[j]!, got[j]!];
      assert.deepEqual(g.ids, w.ids, `request q${i}.${j}: ids`);
      assert.deepEqual(g.finish, w.finish, `request q${i}.${j}: finish`);
      assert.deepEqual(g.topIds, w.topIds, `request q${i}.${j}: top logprob ids`);
      assert.equal(g.lps.length, w.lps.length, `request q${i}.${j}: logprob count`);
      for (let k = 0; k < w.lps.length; k++) assert.ok(Math.abs(g.lps[k]! - w.lps[k]!) < 2e-3, `request q${i}.${j}: logprob ${k}: ${g.lps[k]} vs ${w.lps[k]}`);
      sampled += w.ids.length;
    }
  }
  assert.ok(sampled > 200, `the workload generated tokens (${sampled})`);
});
