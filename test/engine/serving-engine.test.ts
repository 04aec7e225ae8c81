// The TypeScript engine front over the real native engine (stories260k, small pools): goldens through the
// front, stop strings, aborts, validation messages, n > 1 prefix sharing, seeds and logprobs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { EngineRequestError, ServingEngine, SamplingParamsError, type GenerateChunk } from '../../src/engine/engine.js';
import { loadGolden } from '../helpers/fixtures.js';

const golden = loadGolden('stories260k');
const PAGE = 4;
let engine: ServingEngine;

before(async () => {
  engine = await ServingEngine.create({
    pageSize: PAGE,
    maxTotalTokens: 4096,
    chunkedPrefillSize: 64,
    maxRunningRequests: 16,
    randomSeed: 1234,
  });
});

after(async () => {
  await engine?.close();
});

const greedy = (max: number, extra: Record<string, unknown> = {}) => ({ temperature: 0, max_new_tokens: max, ...extra });

async function collect(stream: AsyncIterable<GenerateChunk>): Promise<GenerateChunk[]> {
  const chunks: GenerateChunk[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

/** Waits until the native engine is idle and checks that every page is free or owned by the cache. */
async function settled(): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    const s = engine.stats();
    if (s.running === 0 && s.waiting === 0 && s.liveNativeRequests === 0) {
      assert.equal(s.livePages, 0, 'no pages held by requests');
      assert.equal(s.freePages + s.cachedPages, s.totalPages, 'every page is free or cached');
      return;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`engine did not settle: ${JSON.stringify(engine.stats())}`);
}

/**
 * The output text as SGLang's detokenizer builds it: decoded after the last 5 prompt ids and cut after their
 * text (so a SentencePiece model keeps the first output token's leading space, which decode(output_ids) drops).
 */
function sglangText(prompt: readonly number[], out: readonly number[]): string {
  const ctx = prompt.slice(-5);
  return engine.tokenizer.decode([...ctx, ...out]).slice(engine.tokenizer.decode(ctx).length);
}

/** Checks the streaming invariants of one sample's chunks: cumulative text is the concatenation of deltas. */
function checkStream(chunks: GenerateChunk[]): GenerateChunk {
  let text = '';
  let ids: number[] = [];
  chunks.forEach((c, i) => {
    text += c.delta;
    ids = ids.concat(c.newIds);
    assert.equal(c.text, text, `chunk ${i}: text is the concatenation of the deltas`);
    assert.deepEqual(c.outputIds, ids, `chunk ${i}: output ids are the concatenation of the new ids`);
    assert.equal(c.finishReason === null, i < chunks.length - 1, `chunk ${i}: only the last chunk has a finish reason`);
  });
  return chunks[chunks.length - 1] as GenerateChunk;
}

test('greedy output through the front equals the goldens; text is the decode of the output ids', async () => {
  for (const g of golden.generate) {
    const [out] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy(g.greedy_ids.length) });
    assert.ok(out);
    assert.deepEqual(out.outputIds, g.greedy_ids, `"${g.text}": greedy ids`);
    assert.equal(out.text, sglangText(g.input_ids, g.greedy_ids), `"${g.text}": text`);
    assert.equal(out.text.trimStart(), engine.tokenizer.decode(g.greedy_ids).trimStart(), `"${g.text}": text vs decode(output_ids)`);
    assert.deepEqual(out.finishReason, { type: 'length', length: g.greedy_ids.length });
    assert.equal(out.promptTokens, g.input_ids.length);
    assert.equal(out.completionTokens, g.greedy_ids.length);
    // The same by text, streamed.
    const chunks = await collect(engine.generate({ text: g.text, samplingParams: greedy(g.greedy_ids.length) }));
    const last = checkStream(chunks);
    assert.deepEqual(last.outputIds, g.greedy_ids, `"${g.text}": streamed greedy ids`);
    assert.equal(last.promptTokens, g.input_ids.length, 'the text tokenizes to the golden prompt');
    assert.ok(chunks.length > 1, 'several chunks');
  }
  await settled();
});

/** A stop string made of the end of token k's text and the start of token k+1's, occurring nowhere earlier. */
function splitStop(prompt: number[], ids: number[]): { stop: string; tokens: number } {
  const dec = (n: number) => sglangText(prompt, ids.slice(0, n));
  for (let k = 2; k + 1 < ids.length; k++) {
    const before = dec(k + 1);
    const a = before.slice(dec(k).length);
    const b = dec(k + 2).slice(before.length);
    if (a.trim().length < 2 || b.length < 2) continue;
    const stop = a.slice(-2) + b.slice(0, 2);
    const full = dec(ids.length);
    if (full.indexOf(stop) !== before.length - 2) continue; // must first occur across this boundary
    return { stop, tokens: k + 2 };
  }
  throw new Error('no split stop string found');
}

test('a stop string split across tokens is found, trimmed, never streamed; no_stop_trim keeps it', async () => {
  const g = golden.generate[0]!;
  const { stop, tokens } = splitStop(g.input_ids, g.greedy_ids);
  const full = sglangText(g.input_ids, g.greedy_ids);
  const chunks = await collect(engine.generate({ inputIds: g.input_ids, samplingParams: greedy(24, { stop: ['zzzz', stop] }) }));
  const last = checkStream(chunks);
  assert.deepEqual(last.finishReason, { type: 'stop', matched: stop });
  assert.equal(last.text, full.slice(0, full.indexOf(stop)));
  assert.deepEqual(last.outputIds, g.greedy_ids.slice(0, tokens), 'ids up to the token completing the stop string');
  assert.equal(last.completionTokens, tokens);
  assert.ok(chunks.every((c) => last.text.startsWith(c.text)), 'streamed text never shows the stop string');

  const [kept] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy(24, { stop, no_stop_trim: true }) });
  assert.deepEqual(kept?.finishReason, { type: 'stop', matched: stop });
  assert.equal(kept?.text, sglangText(g.input_ids, g.greedy_ids.slice(0, tokens)));
  assert.ok(kept?.text.includes(stop));
  await settled();
});

test('EOS as a stop token id: output ids keep it, the text trims it unless no_stop_trim', async () => {
  const g = golden.generate[0]!;
  const stopId = g.greedy_ids[5]!; // a normal token, used as a stop id
  const [out] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy(24, { stop_token_ids: [stopId] }) });
  assert.deepEqual(out?.finishReason, { type: 'stop', matched: stopId });
  assert.deepEqual(out?.outputIds, g.greedy_ids.slice(0, 6));
  assert.equal(out?.text, sglangText(g.input_ids, g.greedy_ids.slice(0, 5)));
  const [kept] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy(24, { stop_token_ids: [stopId], no_stop_trim: true }) });
  assert.equal(kept?.text, sglangText(g.input_ids, g.greedy_ids.slice(0, 6)));
});

test('a consumer that leaves aborts the request natively and its pages come back', async () => {
  const g = golden.generate[1]!;
  const stream = engine.generate({ inputIds: g.input_ids, samplingParams: greedy(300, { ignore_eos: true }) });
  let seen = 0;
  for await (const c of stream) {
    assert.equal(c.finishReason, null);
    if (++seen === 3) break;
  }
  assert.ok(stream.isCancelled);
  await settled();
  assert.equal(engine.stats().activeRequests, 0);

  // engine.abort(rid): the stream ends with an abort finish reason.
  const s2 = engine.generate({ inputIds: g.input_ids, samplingParams: greedy(300, { ignore_eos: true }), rid: 'abort-me' });
  const chunks: GenerateChunk[] = [];
  for await (const c of s2) {
    chunks.push(c);
    if (chunks.length === 2) engine.abort('abort-me');
  }
  const last = checkStream(chunks);
  assert.deepEqual(last.finishReason, { type: 'abort', message: 'Aborted', status_code: null, err_type: null });
  assert.ok(last.completionTokens < 300);
  await settled();

  // abort() during the n > 1 prefill stage, and abortAll(): every sample ends with an abort.
  const s3 = engine.generate({ inputIds: g.input_ids, samplingParams: greedy(300, { ignore_eos: true, n: 3 }), rid: 'group' });
  engine.abort('group');
  const s4 = engine.generate({ inputIds: g.input_ids, samplingParams: greedy(300, { ignore_eos: true }) });
  const s5 = engine.generate({ inputIds: g.input_ids, samplingParams: greedy(300, { ignore_eos: true, n: 2 }) });
  engine.abortAll();
  for (const [s, n] of [[s3, 3], [s4, 1], [s5, 2]] as const) {
    const finals = (await collect(s)).filter((c) => c.finishReason !== null);
    assert.equal(finals.length, n);
    assert.ok(finals.every((c) => c.finishReason?.type === 'abort'));
  }
  await settled();
});

test('sampling_params errors name the field; bad requests fail up front', () => {
  const ids = golden.generate[0]!.input_ids;
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ temperature: -1 }, /^temperature must be a non-negative finite number/],
    [{ top_p: 2 }, /^top_p must be in \(0, 1\]/],
    [{ top_k: 0 }, /^top_k must be -1/],
    [{ min_p: 1.5 }, /^min_p must be in \[0, 1\]/],
    [{ repetition_penalty: 0 }, /^repetition_penalty must be in \(0, 2\]/],
    [{ max_new_tokens: 'x' }, /^max_new_tokens must be an integer/],
    [{ max_new_tokens: -1 }, /^max_new_tokens must be at least 0/],
    [{ n: 0 }, /^n must be at least 1/],
    [{ bogus: 1 }, /'bogus'/],
    [{ json_schema: '{}' }, /^json_schema is not supported/],
    [{ regex: 'a+' }, /^regex is not supported/],
    [{ stop_regex: 'a' }, /^stop_regex is not supported/],
    [{ stop_token_ids: [100000] }, /^stop_token_ids must be in/],
  ];
  for (const [sp, re] of bad) {
    assert.throws(() => engine.generate({ inputIds: ids, samplingParams: sp }), (e: Error) => e instanceof SamplingParamsError && re.test(e.message), JSON.stringify(sp));
  }
  const req = (extra: object) => () => engine.generate({ inputIds: ids, ...extra });
  assert.throws(() => engine.generate({}), EngineRequestError);
  assert.throws(() => engine.generate({ text: 'a', inputIds: [1] }), EngineRequestError);
  assert.throws(() => engine.generate({ inputIds: [1, 100000] }), /contains values greater than the vocab size \(512\)/);
  assert.throws(req({ topLogprobsNum: -1 }), /^Error: top_logprobs_num must be a non-negative integer/);
  assert.throws(req({ returnLogprob: true, logprobStartLen: 99 }), /logprob_start_len=99 is higher than the number of input tokens/);
  assert.throws(req({ returnLogprob: true, tokenIdsLogprob: [-1] }), /token_ids_logprob must be in/);
  assert.equal(engine.stats().activeRequests, 0, 'nothing registered by failed requests');
});

test('prompt longer than the context, and prompt + max_new_tokens over it, are refused with SGLang messages', () => {
  const ctx = engine.info.contextLength;
  assert.equal(ctx, 512);
  const long = Array.from({ length: ctx }, (_, i) => 1 + (i % 300));
  assert.throws(
    () => engine.generate({ inputIds: long }),
    (e: Error) => e instanceof EngineRequestError && e.message === `The input (${ctx} tokens) is longer than the model's context length (${ctx} tokens).`,
  );
  const ids = golden.generate[0]!.input_ids;
  assert.throws(
    () => engine.generate({ inputIds: ids, samplingParams: { max_new_tokens: ctx - ids.length } }),
    (e: Error) => e.message.startsWith(`Requested token count exceeds the model's maximum context length of ${ctx} tokens. You requested a total of ${ctx} tokens: ${ids.length} tokens from the input messages and ${ctx - ids.length} tokens for the completion.`),
  );
});

test('n = 3 at temperature 0: three identical samples sharing the cached prompt pages', async () => {
  const g = golden.generate[1]!;
  const chunks = await collect(engine.generate({ inputIds: g.input_ids, samplingParams: greedy(12, { n: 3 }) }));
  const byIndex = [0, 1, 2].map((i) => chunks.filter((c) => c.index === i));
  const finals = byIndex.map((cs) => checkStream(cs));
  const rids = new Set(finals.map((f) => f.rid));
  assert.equal(rids.size, 3, 'each sample has its own id');
  const minCached = Math.floor((g.input_ids.length - 1) / PAGE) * PAGE;
  for (const f of finals) {
    assert.deepEqual(f.outputIds, g.greedy_ids.slice(0, 12));
    assert.ok(f.cachedTokens >= minCached, `cached ${f.cachedTokens} >= ${minCached}`);
  }
  const all = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy(4, { n: 2 }) });
  assert.deepEqual(all.map((c) => c.index), [0, 1]);
  await settled();
});

test('seeded sampling reproduces, another seed differs; top_k = 1 is greedy', async () => {
  const g = golden.generate[2]!;
  const run = async (seed: number) =>
    (await engine.generateAll({ inputIds: g.input_ids, samplingParams: { temperature: 1, sampling_seed: seed, max_new_tokens: 24, ignore_eos: true } }))[0]!.outputIds;
  const a = await run(42);
  const b = await run(42);
  const c = await run(43);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const [k1] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: { temperature: 1, top_k: 1, max_new_tokens: 24 } });
  assert.deepEqual(k1?.outputIds, g.greedy_ids);
});

test('return_logprob with logprob_start_len 0: prompt logprobs match the golden, outputs carry triples', async () => {
  const g = golden.generate[1]!;
  const [out] = await engine.generateAll({
    inputIds: g.input_ids,
    samplingParams: greedy(8),
    returnLogprob: true,
    logprobStartLen: 0,
    topLogprobsNum: 2,
    tokenIdsLogprob: [g.greedy_ids[0]!, 5],
    returnTextInLogprobs: true,
  });
  assert.ok(out?.inputTokenLogprobs && out.outputTokenLogprobs && out.inputTopLogprobs && out.outputTopLogprobs);
  const inLp = out.inputTokenLogprobs;
  assert.equal(inLp.length, g.input_ids.length);
  assert.equal(inLp[0]![0], null, 'no logprob for the first prompt token');
  inLp.forEach(([lp, id, text], i) => {
    assert.equal(id, g.input_ids[i]);
    assert.equal(text, engine.tokenizer.decode([id], { skipSpecialTokens: false }));
    if (i > 0) assert.ok(Math.abs((lp as number) - (g.prompt_logprobs[i] as number)) < 1e-3, `prompt logprob ${i}: ${lp} vs ${g.prompt_logprobs[i]}`);
  });
  assert.equal(out.inputTopLogprobs[0], null);
  assert.equal(out.inputTopLogprobs.length, g.input_ids.length);
  assert.equal(out.outputTokenLogprobs.length, 8);
  out.outputTokenLogprobs.forEach(([lp, id], i) => {
    assert.equal(id, g.greedy_ids[i]);
    assert.ok(Math.abs((lp as number) - g.greedy_logprobs[i]!) < 1e-3, `output logprob ${i}`);
    const top = out.outputTopLogprobs![i]!;
    assert.equal(top.length, 2);
    assert.equal(top[0]![1], id, 'greedy token is the top one');
  });
  assert.equal(out.inputTokenIdsLogprobs?.[0], null);
  const firstIds = out.outputTokenIdsLogprobs![0]!;
  assert.deepEqual(firstIds.map((t) => t[1]), [g.greedy_ids[0], 5]);
  assert.ok(Math.abs((firstIds[0]![0] as number) - g.greedy_logprobs[0]!) < 1e-3);

  // Default logprob_start_len (-1): no prompt logprobs, and no text without return_text_in_logprobs.
  const [plain] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: greedy(3), returnLogprob: true });
  assert.deepEqual(plain?.inputTokenLogprobs, []);
  assert.equal(plain?.outputTokenLogprobs?.length, 3);
  assert.equal(plain?.outputTokenLogprobs?.[0]?.[2], null);
  assert.equal(plain?.inputTopLogprobs, undefined);
});

test('max_new_tokens 0 is a prefill-only request; concurrent requests all finish', async () => {
  const g = golden.generate[0]!;
  const [pre] = await engine.generateAll({ inputIds: g.input_ids, samplingParams: { max_new_tokens: 0 } });
  assert.deepEqual(pre?.finishReason, { type: 'length', length: 0 });
  assert.deepEqual(pre?.outputIds, []);
  assert.equal(pre?.text, '');
  const outs = await Promise.all(golden.generate.map((x) => engine.generateAll({ inputIds: x.input_ids, samplingParams: greedy(16) })));
  outs.forEach((o, i) => assert.deepEqual(o[0]?.outputIds, golden.generate[i]!.greedy_ids.slice(0, 16)));
  await settled();
  assert.ok(engine.callbackStats.steps > 0);
  assert.ok(engine.stats().cachedPages > 0);
  assert.equal(await engine.flushCache(), true);
  assert.equal(engine.stats().cachedPages, 0);
});

test('a consumer that falls behind gets merged chunks with the same invariants', async () => {
  const g = golden.generate[0]!;
  const stream = engine.generate({ inputIds: g.input_ids, samplingParams: greedy(24) });
  await settled(); // the request has finished before anything is read
  const chunks = await collect(stream);
  assert.equal(chunks.length, 1);
  const last = checkStream(chunks);
  assert.deepEqual(last.newIds, g.greedy_ids);
  assert.equal(last.delta, last.text);
});

test('close() ends running streams with an abort and refuses new requests', async () => {
  const e2 = await ServingEngine.create({ maxTotalTokens: 1024, chunkedPrefillSize: 64 });
  const g = golden.generate[0]!;
  const streams = [e2.generate({ inputIds: g.input_ids, samplingParams: greedy(400, { ignore_eos: true }) }), e2.generate({ inputIds: g.input_ids, samplingParams: greedy(400, { ignore_eos: true, n: 2 }) })];
  const first = await streams[0]!.next(); // running
  assert.equal(first.done, false);
  const results = streams.map((s) => collect(s));
  await e2.close();
  const [r0, r1] = await Promise.all(results);
  assert.equal(r0!.at(-1)?.finishReason?.type, 'abort');
  const finals = r1!.filter((x) => x.finishReason !== null);
  assert.deepEqual(finals.map((c) => c.finishReason?.type), ['abort', 'abort']);
  assert.ok(finals.every((c) => c.finishReason?.type === 'abort' && c.finishReason.message === 'The engine is shutting down.'));
  assert.throws(() => e2.generate({ inputIds: g.input_ids }), /closed/);
});
