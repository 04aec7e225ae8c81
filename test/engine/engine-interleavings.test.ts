// 200 random submit / abort interleavings through the engine thread: requests of random lengths are
// started at random moments, and some are aborted by rid, by abortAll-free consumer breaks, or right after
// submission. Every stream must end (no request hangs), each with one final chunk, and afterwards no page
// is held: the pool is full again after flushCache().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ServingEngine, type GenerateChunk } from '../../src/engine/engine.js';

test('200 random submit/abort interleavings leave no page leaked and no request hanging', async () => {
  const engine = await ServingEngine.create({ pageSize: 4, maxTotalTokens: 1200, chunkedPrefillSize: 16, maxRunningRequests: 12, schedulePolicy: 'lpm', randomSeed: 3 });
  let s = 12345;
  const rnd = (n: number) => {
    // xorshift32 (an LCG's low bits would cycle with a short period)
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
  const V = engine.info.vocabSize;
  const shared = Array.from({ length: 40 }, () => 3 + rnd(V - 3));
  const ended: Promise<string>[] = [];
  let finalChunks = 0;
  try {
    for (let op = 0; op < 200; op++) {
      const len = 1 + rnd(40);
      const ids = rnd(2) ? shared.slice(0, len) : [];
      while (ids.length < len) ids.push(3 + rnd(V - 3));
      const rid = `r${op}`;
      const mode = rnd(4); // 0: run to the end, 1: abort by rid later, 2: consumer breaks, 3: abort at once
      const breakAfter = 1 + rnd(5);
      const stream = engine.generate({ rid, inputIds: ids, samplingParams: { temperature: rnd(2) ? 0 : 0.8, max_new_tokens: 1 + rnd(24), ignore_eos: rnd(2) === 1, n: rnd(8) === 0 ? 2 : 1 } });
      if (mode === 3) engine.abort(rid);
      ended.push(
        (async () => {
          let seen = 0;
          let last: GenerateChunk | undefined;
          for await (const c of stream) {
            last = c;
            if (c.finishReason) finalChunks++;
            if (mode === 2 && ++seen >= breakAfter) return 'broke';
          }
          assert.ok(last?.finishReason, `${rid}: the stream ended with a finish reason`);
          return last!.finishReason!.type;
        })(),
      );
      if (mode === 1) setTimeout(() => engine.abort(rid), rnd(8));
      if (rnd(3) === 0) await new Promise((r) => setTimeout(r, rnd(4)));
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`requests hang: ${JSON.stringify(engine.stats())}`)), 60_000);
    });
    const reasons = await Promise.race([Promise.all(ended), timeout]).finally(() => clearTimeout(timer));
    assert.equal(reasons.length, 200);
    assert.ok(reasons.includes('abort'), 'some requests were aborted');
    assert.ok(reasons.includes('length') || reasons.includes('stop'), 'some requests completed');
    assert.ok(finalChunks >= reasons.filter((r) => r !== 'broke').length);
    // Aborts of consumers that broke off reach the engine at its next step; wait for it to go idle.
    for (let i = 0; i < 2000 && (engine.stats().running > 0 || engine.stats().waiting > 0); i++) await new Promise((r) => setTimeout(r, 5));
    const st = engine.stats();
    assert.equal(st.running + st.waiting, 0, 'engine idle');
    assert.equal(st.livePages, 0, 'no pages held by requests');
    assert.equal(st.freePages + st.cachedPages, st.totalPages, 'every page is free or cached');
    assert.equal(await engine.flushCache(), true);
    assert.equal(engine.stats().freePages, engine.stats().totalPages, 'pool full after flush');
  } finally {
    await engine.close();
  }
});
