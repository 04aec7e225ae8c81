// The REST gateway over a LocalRuntime over the real ServingEngine (stories260k, page size 4, a small pool),
// through global fetch on 127.0.0.1: every route, SSE framing, batches and n > 1, logprobs and /v1/score
// against transformers' goldens, aborts freeing pages, --api-key, and SGLang's error statuses and bodies.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';

import { ServingEngine } from '../../src/engine/engine.js';
import { createGateway } from '../../src/http/gateway.js';
import { buildServerArgs, LocalRuntime } from '../../src/runtime/local-runtime.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';

const golden = loadGolden('stories260k');
const PAGE = 4;
const MODEL = 'stories260k-test';
let engine: ServingEngine;
let runtime: LocalRuntime;
const apps: FastifyInstance[] = [];
let base: string; // metrics on, no api key
let baseKey: string; // --api-key sekrit
let baseNoMetrics: string;
// qwen2-tiny (~1 ms a token on the CPU): its score goldens, and requests long enough to abort mid-way.
let qengine: ServingEngine;
let qruntime: LocalRuntime;
let qbase: string;

async function listen(app: FastifyInstance): Promise<string> {
  apps.push(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return `http://127.0.0.1:${addr.port}`;
}

before(async () => {
  engine = await ServingEngine.create({ pageSize: PAGE, maxTotalTokens: 2048, chunkedPrefillSize: 64, maxRunningRequests: 16, randomSeed: 1234 });
  const serverArgs = buildServerArgs(engine, { modelPath: 'stories260k', servedModelName: MODEL, enableMetrics: true });
  runtime = new LocalRuntime(engine, { modelPath: 'stories260k', tokenizerPath: 'stories260k', servedModelName: MODEL, serverArgs, enableMetrics: true });
  base = await listen(createGateway(runtime, { enableMetrics: true }));
  baseKey = await listen(createGateway(runtime, { apiKey: 'sekrit', enableMetrics: true }));
  baseNoMetrics = await listen(createGateway(runtime, {}));
  qengine = await ServingEngine.create({ modelPath: fixtureModelDir('qwen2-tiny'), pageSize: PAGE, maxTotalTokens: 1024, randomSeed: 1 });
  qruntime = new LocalRuntime(qengine, { modelPath: 'qwen2-tiny', tokenizerPath: 'qwen2-tiny', servedModelName: 'qwen2-tiny', serverArgs: {} });
  qbase = await listen(createGateway(qruntime));
});

after(async () => {
  for (const app of apps) await app.close();
  await runtime?.close();
  await qruntime?.close();
});

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

async function post(path: string, body: unknown, b = base): Promise<{ status: number; json: Json; text: string; headers: Headers }> {
  const res = await fetch(b + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: Json = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text, headers: res.headers };
}

async function get(path: string, b = base, headers: Record<string, string> = {}): Promise<{ status: number; json: Json; text: string; headers: Headers }> {
  const res = await fetch(b + path, { headers });
  const text = await res.text();
  let json: Json = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** Parses an SSE body into its data payloads; checks the framing (`data: ...\n\n`, [DONE] last). */
function sse(text: string): Json[] {
  assert.ok(text.endsWith('data: [DONE]\n\n'), 'the stream ends with [DONE]');
  const events = text.split('\n\n').slice(0, -1);
  for (const e of events) assert.ok(e.startsWith('data: '), `event framing: ${JSON.stringify(e.slice(0, 40))}`);
  return events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
}

async function settled(e: ServingEngine = engine): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    const s = e.stats();
    if (s.running === 0 && s.waiting === 0 && s.liveNativeRequests === 0 && s.activeRequests === 0) {
      assert.equal(s.livePages, 0, 'no pages held by requests');
      assert.equal(s.freePages + s.cachedPages, s.totalPages, 'every page is free or cached');
      return;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`engine did not settle: ${JSON.stringify(e.stats())}`);
}

const greedy = (max: number, extra: Record<string, unknown> = {}) => ({ temperature: 0, max_new_tokens: max, ...extra });
const g0 = golden.generate[0]!;

/** A quick request that must still work (the server keeps serving after an error). */
async function stillServing(): Promise<void> {
  const r = await post('/generate', { input_ids: g0.input_ids, sampling_params: greedy(2) });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.output_ids, g0.greedy_ids.slice(0, 2));
}

test('GET /get_model_info and /model_info: exactly SGLang\'s 9 keys', async () => {
  for (const p of ['/get_model_info', '/model_info']) {
    const r = await get(p);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {
      model_path: 'stories260k',
      tokenizer_path: 'stories260k',
      is_generation: true,
      preferred_sampling_params: null,
      weight_version: 'default',
      has_image_understanding: false,
      has_audio_understanding: false,
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
    });
  }
});

test('GET /server_info and /get_server_info: flat args, status, capacity, internal_states, version', async () => {
  for (const p of ['/server_info', '/get_server_info']) {
    const r = await get(p);
    assert.equal(r.status, 200);
    const s = r.json;
    assert.equal(s.status, 'ready');
    assert.equal(s.model_path, 'stories260k');
    assert.equal(s.served_model_name, MODEL);
    assert.equal(s.page_size, PAGE);
    assert.equal(s.max_total_num_tokens, 2048);
    assert.equal(s.max_req_input_len, 511);
    assert.equal(s.weight_version, 'default');
    assert.equal(s.api_key, null);
    assert.equal(typeof s.version, 'string');
    assert.equal(s.internal_states.length, 1);
    const st = s.internal_states[0];
    assert.equal(st.page_size, PAGE);
    assert.equal(typeof st.last_gen_throughput, 'number');
    assert.deepEqual(Object.keys(st.memory_usage).sort(), ['graph', 'kvcache', 'token_capacity', 'weight']);
    assert.equal(st.memory_usage.token_capacity, 2048);
    assert.equal(st.memory_usage.graph, 0);
  }
});

test('GET /health and /health_generate: 200 with an empty body', async () => {
  for (const p of ['/health', '/health_generate']) {
    const r = await get(p);
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
  }
});

test('POST /generate: greedy output equals the goldens, with SGLang\'s meta_info', async () => {
  for (const g of golden.generate) {
    const r = await post('/generate', { input_ids: g.input_ids, sampling_params: greedy(g.greedy_ids.length) });
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.json), ['text', 'output_ids', 'meta_info']);
    assert.deepEqual(r.json.output_ids, g.greedy_ids);
    assert.equal(r.json.text.trimStart(), engine.tokenizer.decode(g.greedy_ids).trimStart());
    const m = r.json.meta_info;
    assert.match(m.id, /^[0-9a-f]{32}$/);
    assert.deepEqual(m.finish_reason, { type: 'length', length: g.greedy_ids.length });
    assert.equal(m.prompt_tokens, g.input_ids.length);
    assert.equal(m.completion_tokens, g.greedy_ids.length);
    assert.equal(typeof m.cached_tokens, 'number');
    assert.equal(m.weight_version, 'default');
    assert.ok(m.e2e_latency > 0);
    assert.equal(m.input_token_logprobs, undefined, 'no logprobs unless asked');
  }
  // text input: the prompt is tokenized with BOS
  const r = await post('/generate', { text: g0.text, sampling_params: greedy(6), rid: 'my-rid' });
  assert.deepEqual(r.json.output_ids, g0.greedy_ids.slice(0, 6));
  assert.equal(r.json.meta_info.id, 'my-rid');
  assert.equal(r.json.meta_info.prompt_tokens, g0.input_ids.length);
  // PUT works too (api_route)
  const put = await fetch(base + '/generate', { method: 'PUT', body: JSON.stringify({ input_ids: g0.input_ids, sampling_params: greedy(1) }) });
  assert.equal(put.status, 200);
  assert.deepEqual(((await put.json()) as Json).output_ids, g0.greedy_ids.slice(0, 1));
});

test('POST /generate stream: SSE framing, cumulative chunks, same tokens and text as non-streaming', async () => {
  const body = { text: golden.generate[1]!.text, sampling_params: greedy(20) };
  const plain = await post('/generate', body);
  const res = await fetch(base + '/generate', { method: 'POST', body: JSON.stringify({ ...body, stream: true }) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const chunks = sse(await res.text());
  assert.ok(chunks.length >= 2, 'several chunks');
  let prevIds: number[] = [];
  chunks.forEach((c, i) => {
    assert.equal(c.index, undefined, 'no index on a single stream');
    assert.deepEqual(c.output_ids.slice(0, prevIds.length), prevIds, 'output_ids are cumulative');
    prevIds = c.output_ids;
    assert.equal(c.meta_info.finish_reason === null, i < chunks.length - 1, 'finish_reason only on the last chunk');
  });
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.output_ids, plain.json.output_ids);
  assert.equal(last.text, plain.json.text);
  assert.deepEqual(last.meta_info.finish_reason, plain.json.meta_info.finish_reason);
});

test('POST /generate batches: list text, list input_ids, n = 2; order and shapes', async () => {
  const gs = golden.generate;
  const texts = await post('/generate', { text: gs.map((g) => g.text), sampling_params: greedy(4), rid: 'b' });
  assert.equal(texts.status, 200);
  assert.ok(Array.isArray(texts.json));
  assert.equal(texts.json.length, gs.length);
  texts.json.forEach((o: Json, i: number) => {
    assert.deepEqual(o.output_ids, gs[i]!.greedy_ids.slice(0, 4), `input ${i}`);
    assert.equal(o.meta_info.id, `b_${i}`, 'a string rid becomes rid_i');
    assert.equal(o.index, undefined);
  });

  const ids = await post('/generate', { input_ids: gs.map((g) => g.input_ids), sampling_params: gs.map((g) => greedy(g.greedy_ids.length)) });
  assert.equal(ids.json.length, gs.length);
  ids.json.forEach((o: Json, i: number) => assert.deepEqual(o.output_ids, gs[i]!.greedy_ids));

  // One prompt with n = 2 is a list of 2; a list of 2 prompts with n = 2 is 4 outputs, input i sample j at i*2+j.
  const one = await post('/generate', { input_ids: g0.input_ids, sampling_params: greedy(3, { n: 2 }) });
  assert.equal(one.json.length, 2);
  for (const o of one.json) assert.deepEqual(o.output_ids, g0.greedy_ids.slice(0, 3));
  assert.notEqual(one.json[0].meta_info.id, one.json[1].meta_info.id);

  const two = await post('/generate', { input_ids: [gs[0]!.input_ids, gs[1]!.input_ids], sampling_params: greedy(3, { n: 2 }) });
  assert.equal(two.json.length, 4);
  two.json.forEach((o: Json, k: number) => assert.deepEqual(o.output_ids, gs[Math.floor(k / 2)]!.greedy_ids.slice(0, 3), `output ${k}`));

  // A batch stream carries "index"; the last chunk of each index has the full output.
  const res = await fetch(base + '/generate', { method: 'POST', body: JSON.stringify({ input_ids: [gs[0]!.input_ids, gs[2]!.input_ids], sampling_params: greedy(5, { n: 2 }), stream: true }) });
  const chunks = sse(await res.text());
  const lastOf = new Map<number, Json>();
  for (const c of chunks) {
    assert.ok(Number.isInteger(c.index) && c.index >= 0 && c.index < 4, 'index on batch chunks');
    lastOf.set(c.index, c);
  }
  assert.equal(lastOf.size, 4);
  for (const [k, c] of lastOf) {
    assert.deepEqual(c.output_ids, (k < 2 ? gs[0]! : gs[2]!).greedy_ids.slice(0, 5));
    assert.notEqual(c.meta_info.finish_reason, null);
  }
  await settled();
});

test('POST /generate logprobs: prompt logprobs from position 0 and greedy output logprobs match the goldens', async () => {
  for (const g of golden.generate) {
    const r = await post('/generate', {
      input_ids: g.input_ids,
      sampling_params: greedy(g.greedy_ids.length),
      return_logprob: true,
      logprob_start_len: 0,
      top_logprobs_num: 2,
      token_ids_logprob: [1, 2],
      return_text_in_logprobs: true,
    });
    assert.equal(r.status, 200);
    const m = r.json.meta_info;
    assert.equal(m.input_token_logprobs.length, g.input_ids.length);
    m.input_token_logprobs.forEach(([lp, id, text]: [number | null, number, string | null], i: number) => {
      assert.equal(id, g.input_ids[i]);
      assert.equal(typeof text, 'string', 'text with return_text_in_logprobs');
      if (i === 0) assert.equal(lp, null);
      else assert.ok(Math.abs((lp as number) - (g.prompt_logprobs[i] as number)) < 1e-3, `prompt logprob ${i}: ${lp} vs ${g.prompt_logprobs[i]}`);
    });
    assert.equal(m.output_token_logprobs.length, g.greedy_ids.length);
    m.output_token_logprobs.forEach(([lp, id]: [number, number], i: number) => {
      assert.equal(id, g.greedy_ids[i]);
      assert.ok(Math.abs(lp - g.greedy_logprobs[i]!) < 1e-3, `output logprob ${i}: ${lp} vs ${g.greedy_logprobs[i]}`);
    });
    // top-2 at each output position: the greedy id first, with the margin of the golden
    m.output_top_logprobs.forEach((top: [number, number, string][], i: number) => {
      assert.equal(top.length, 2);
      assert.equal(top[0]![1], g.greedy_ids[i]);
      assert.ok(Math.abs(top[0]![0] - top[1]![0] - g.greedy_top2_margin[i]!) < 1e-3, `top-2 margin ${i}`);
    });
    assert.equal(m.input_top_logprobs.length, g.input_ids.length);
    // token_ids_logprob at the first output position = the label logprobs after the prompt
    const first = m.output_token_ids_logprobs[0];
    assert.deepEqual(first.map((t: Json) => t[1]), [1, 2]);
    for (const [lp, id] of first) assert.ok(Math.abs(lp - g.label_logprobs[String(id)]!) < 1e-3, `label ${id}`);
  }
  // Without return_text_in_logprobs the text slot is null.
  const r = await post('/generate', { input_ids: g0.input_ids, sampling_params: greedy(2), return_logprob: true });
  assert.deepEqual(r.json.meta_info.input_token_logprobs, []);
  for (const t of r.json.meta_info.output_token_logprobs) assert.equal(t[2], null);
  assert.equal(r.json.meta_info.output_top_logprobs, undefined);
});

test('POST /tokenize and /detokenize: round trip, lists, special tokens', async () => {
  const t = await post('/tokenize', { prompt: g0.text });
  assert.equal(t.status, 200);
  assert.deepEqual(t.json, { tokens: g0.input_ids, count: g0.input_ids.length, max_model_len: 512 });
  const noSpecial = await post('/tokenize', { prompt: g0.text, add_special_tokens: false });
  assert.deepEqual(noSpecial.json.tokens, g0.input_ids.slice(1));
  const list = await post('/v1/tokenize', { prompt: golden.generate.map((g) => g.text) });
  assert.deepEqual(list.json.tokens, golden.generate.map((g) => g.input_ids));
  assert.deepEqual(list.json.count, golden.generate.map((g) => g.input_ids.length));
  const d = await post('/detokenize', { tokens: g0.input_ids });
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { text: g0.text });
  const kept = await post('/v1/detokenize', { tokens: g0.input_ids, skip_special_tokens: false });
  assert.ok(kept.json.text.startsWith('<s>'));
  // OpenAI-style routes want a JSON content type
  const res = await fetch(base + '/tokenize', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ prompt: 'x' }) });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as Json).type, 'BadRequestError');
  const bad = await post('/tokenize', { prompt: 5 });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.object, 'error');
});

test('POST /detokenize with a list of lists answers a list of texts; [] is ""; bad sublists are 400', async () => {
  const ids = golden.generate.map((g) => g.input_ids);
  const batch = await post('/detokenize', { tokens: ids });
  assert.equal(batch.status, 200);
  assert.deepEqual(batch.json, { text: golden.generate.map((g) => g.text) });
  assert.deepEqual((await post('/detokenize', { tokens: [] })).json, { text: '' });
  const bad = await post('/detokenize', { tokens: [[1, 2], [3, 'x']] });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.message, "Invalid input: Sublist in 'tokens' must contain only integers. Found: [3, 'x']");
  const wrongType = await post('/detokenize', { tokens: 'abc' });
  assert.equal(wrongType.status, 400);
  assert.equal(wrongType.json.message, "Invalid tokens type: <class 'str'>. Expected List[int] or List[List[int]].");
  assert.equal((await post('/detokenize', { tokens: [1, [2]] })).json.message, "Invalid input: 'tokens' must be a list of integers.");
});

test('a known path asked with another method is 405 with Allow (FastAPI); an unknown path is 404', async () => {
  const r = await fetch(base + '/generate', { method: 'GET' });
  assert.equal(r.status, 405);
  assert.deepEqual(await r.json(), { detail: 'Method Not Allowed' });
  assert.deepEqual(r.headers.get('allow')?.split(', ').sort(), ['POST', 'PUT']);
  const info = await fetch(base + '/get_model_info', { method: 'POST' });
  assert.equal(info.status, 405);
  assert.ok(info.headers.get('allow')?.includes('GET'));
  await info.text();
  const missing = await fetch(base + '/nope', { method: 'GET' });
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { detail: 'Not Found' });
});

test('CORS as SGLang configures it: preflight answered before the api key, simple and streamed responses allowed', async () => {
  const pre = await fetch(baseKey + '/generate', {
    method: 'OPTIONS',
    headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
  assert.equal(pre.status, 200);
  assert.equal(await pre.text(), 'OK');
  assert.equal(pre.headers.get('access-control-allow-origin'), 'http://app.example');
  assert.equal(pre.headers.get('access-control-allow-headers'), 'authorization, content-type');
  assert.equal(pre.headers.get('access-control-allow-credentials'), 'true');
  assert.match(pre.headers.get('access-control-allow-methods') ?? '', /POST/);
  const simple = await fetch(base + '/get_model_info', { headers: { origin: 'http://app.example' } });
  assert.equal(simple.headers.get('access-control-allow-origin'), '*');
  assert.equal(simple.headers.get('access-control-allow-credentials'), 'true');
  await simple.text();
  const stream = await fetch(base + '/generate', {
    method: 'POST', headers: { origin: 'http://app.example' }, body: JSON.stringify({ input_ids: g0.input_ids, sampling_params: greedy(2), stream: true }),
  });
  assert.equal(stream.headers.get('access-control-allow-origin'), '*');
  assert.match(await stream.text(), /data: \[DONE\]/);
  const plain = await fetch(base + '/get_model_info');
  assert.equal(plain.headers.get('access-control-allow-origin'), null, 'no Origin, no CORS headers');
  await plain.text();
});

test('POST /v1/score: probabilities of the label tokens after query + item (stories260k goldens)', async () => {
  const labels = [1, 2];
  // ids: query = prompt minus its last 2 ids, item = those 2 ids; item_first swaps them.
  const scores = await post('/v1/score', {
    query: g0.input_ids.slice(0, -2),
    items: golden.generate.map(() => g0.input_ids.slice(-2)),
    label_token_ids: labels,
  });
  assert.equal(scores.status, 200);
  assert.equal(scores.json.object, 'scoring');
  assert.equal(scores.json.scores.length, golden.generate.length);
  for (const row of scores.json.scores) {
    labels.forEach((id, k) => {
      const want = Math.exp(g0.label_logprobs[String(id)]!);
      assert.ok(Math.abs(row[k] - want) / want < 1e-3, `label ${id}: ${row[k]} vs ${want}`);
    });
  }
  assert.equal(scores.json.usage.prompt_tokens, g0.input_ids.length * golden.generate.length);
  const itemFirst = await post('/v1/score', { query: g0.input_ids.slice(2), items: [g0.input_ids.slice(0, 2)], label_token_ids: labels, item_first: true });
  const want = labels.map((id) => Math.exp(g0.label_logprobs[String(id)]!));
  itemFirst.json.scores[0].forEach((s: number, k: number) => assert.ok(Math.abs(s - want[k]!) / want[k]! < 1e-3));

  // text: the prompt is the string query + item, tokenized like /generate's text (BOS added)
  const g1 = golden.generate[1]!;
  const cut = g1.text.lastIndexOf(' ');
  const txt = await post('/v1/score', { query: g1.text.slice(0, cut), items: [g1.text.slice(cut)], label_token_ids: labels, apply_softmax: true });
  assert.equal(txt.status, 200);
  const l1 = labels.map((id) => g1.label_logprobs[String(id)]!);
  const m = Math.max(...l1);
  const z = l1.reduce((a, x) => a + Math.exp(x - m), 0);
  txt.json.scores[0].forEach((s: number, k: number) => assert.ok(Math.abs(s - Math.exp(l1[k]! - m) / z) < 1e-4, `softmax ${k}`));
  assert.ok(Math.abs(txt.json.scores[0][0] + txt.json.scores[0][1] - 1) < 1e-6);

  const oov = await post('/v1/score', { query: 'a', items: ['b'], label_token_ids: [100000] });
  assert.equal(oov.status, 400);
  assert.deepEqual(oov.json, { object: 'error', message: 'Token ID 100000 is out of vocabulary (vocab size: 512)', type: 'BadRequestError', param: null, code: 400 });
  const mixed = await post('/v1/score', { query: 'a', items: [[1, 2]], label_token_ids: [1] });
  assert.equal(mixed.status, 400);
  assert.equal(mixed.json.message, 'Invalid combination of query/items types for score_request.');
  await settled();
});

test('POST /v1/score on qwen2-tiny matches its score goldens (text query + item, item_first)', async () => {
  const qg = loadGolden('qwen2-tiny');
  assert.ok(qg.score && qg.score.length > 0);
  for (const sc of qg.score!) {
    const labels = Object.keys(sc.label_logprobs).map(Number);
    const tok = await post('/tokenize', { prompt: sc.item_first ? `${sc.item}${sc.query}` : `${sc.query}${sc.item}` }, qbase);
    assert.deepEqual(tok.json.tokens, sc.input_ids, 'the prompt the golden scored');
    const r = await post('/v1/score', { query: sc.query, items: [sc.item], label_token_ids: labels, item_first: sc.item_first, model: 'qwen2-tiny' }, qbase);
    assert.equal(r.status, 200);
    assert.equal(r.json.model, 'qwen2-tiny');
    labels.forEach((id, k) => {
      const lp = Math.log(r.json.scores[0][k]);
      assert.ok(Math.abs(lp - sc.label_logprobs[String(id)]!) < 2e-3, `${sc.item} ${sc.item_first}: label ${id}: ${lp} vs ${sc.label_logprobs[String(id)]}`);
    });
  }
  // Paris / London / Berlin in one request, apply_softmax: rows sum to 1, in item order.
  const all = await post('/v1/score', { query: 'The capital of France is', items: ['Paris', 'London', 'Berlin'], label_token_ids: [9454, 2753], apply_softmax: true }, qbase);
  assert.equal(all.json.scores.length, 3);
  qg.score!.filter((x) => !x.item_first).forEach((sc, i) => {
    const l = [sc.label_logprobs['9454']!, sc.label_logprobs['2753']!];
    const p0 = 1 / (1 + Math.exp(l[1]! - l[0]!));
    assert.ok(Math.abs(all.json.scores[i][0] - p0) < 1e-3, `${sc.item}: ${all.json.scores[i][0]} vs ${p0}`);
  });
});

/** Starts a long qwen2-tiny request (450 tokens, ~0.5 s) and waits until it runs. */
async function longRequest(extra: Record<string, unknown> = {}, signal?: AbortSignal): Promise<{ done: Promise<Response | Error> }> {
  const p = fetch(qbase + '/generate', {
    method: 'POST',
    body: JSON.stringify({ text: 'Once upon a time', sampling_params: { max_new_tokens: 450, ignore_eos: true, temperature: 0 }, ...extra }),
    ...(signal ? { signal } : {}),
  }).catch((e: Error) => e);
  for (let i = 0; i < 500 && qengine.stats().running === 0; i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(qengine.stats().running > 0, 'the long request runs');
  return { done: p }; // wrapped: an async function returning a promise would wait for it
}

test('a client that aborts a running stream frees its pages', async () => {
  const steps0 = qengine.stats().steps;
  const ac = new AbortController();
  const res = await fetch(qbase + '/generate', {
    method: 'POST',
    body: JSON.stringify({ text: 'Once upon a time', sampling_params: { max_new_tokens: 450, ignore_eos: true, temperature: 0 }, stream: true }),
    signal: ac.signal,
  });
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.ok(!first.done && new TextDecoder().decode(first.value).startsWith('data: '));
  ac.abort();
  await reader.cancel().catch(() => {});
  await settled(qengine);
  assert.ok(qengine.stats().steps - steps0 < 300, `aborted mid-way (${qengine.stats().steps - steps0} steps)`);
});

test('a client that goes away during a non-streaming request aborts it', async () => {
  const steps0 = qengine.stats().steps;
  const ac = new AbortController();
  const { done } = await longRequest({}, ac.signal);
  ac.abort();
  assert.ok((await done) instanceof Error);
  await settled(qengine);
  assert.ok(qengine.stats().steps - steps0 < 300, `aborted mid-way (${qengine.stats().steps - steps0} steps)`);
});

test('POST /abort_request: aborts by rid (finish_reason abort, 200), abort_all, unknown rid is 200', async () => {
  const { done: p } = await longRequest({ rid: 'abort-me' });
  const a = await post('/abort_request', { rid: 'abort-me' }, qbase);
  assert.equal(a.status, 200);
  assert.equal(a.text, '');
  const r = (await p) as Response;
  assert.equal(r.status, 200);
  const out = (await r.json()) as Json;
  assert.deepEqual(out.meta_info.finish_reason, { type: 'abort', message: 'Aborted', status_code: null, err_type: null });
  assert.ok(out.meta_info.completion_tokens < 450);

  const { done: q } = await longRequest({ text: ['a', 'b'] });
  assert.equal((await post('/abort_request', { abort_all: true }, qbase)).status, 200);
  const outs = (await ((await q) as Response).json()) as Json[];
  assert.equal(outs.length, 2);
  for (const o of outs) assert.equal(o.meta_info.finish_reason.type, 'abort');
  assert.equal((await post('/abort_request', { rid: 'no-such-request' }, qbase)).status, 200);
  await settled(qengine);
});

test('/flush_cache: 200 when idle, 400 while a request runs (timeout 0), text body', async () => {
  const ok = await get('/flush_cache');
  assert.equal(ok.status, 200);
  assert.equal(ok.text, 'Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting requests, the operation will not be performed.)\n');
  assert.equal((await post('/flush_cache?timeout=1', '')).status, 200);
  const { done: p } = await longRequest({ rid: 'busy' });
  const busy = await post('/flush_cache', '', qbase);
  assert.equal(busy.status, 400);
  assert.ok(busy.text.startsWith('Cache flushed.'));
  // with a timeout it waits for the request to end
  const waited = post('/flush_cache?timeout=5', '', qbase);
  await post('/abort_request', { rid: 'busy' }, qbase);
  await p;
  assert.equal((await waited).status, 200);
  assert.equal(qengine.stats().cachedPages, 0);
});

test('GET /get_load, /v1/models, /metrics', async () => {
  const load = await get('/get_load');
  assert.equal(load.status, 200);
  assert.deepEqual(Object.keys(load.json[0]).sort(), ['dp_rank', 'num_reqs', 'num_tokens', 'num_waiting_reqs']);
  const models = await get('/v1/models');
  assert.equal(models.json.object, 'list');
  assert.equal(models.json.data.length, 1);
  const card = models.json.data[0];
  assert.equal(card.id, MODEL);
  assert.equal(card.root, 'stories260k');
  assert.equal(card.owned_by, 'sglang');
  assert.equal(card.max_model_len, 512);
  assert.equal(card.object, 'model');
  const metrics = await get('/metrics');
  assert.equal(metrics.status, 200);
  for (const name of [
    'sglang:num_running_reqs', 'sglang:num_used_tokens', 'sglang:token_usage', 'sglang:gen_throughput', 'sglang:num_queue_reqs',
    'sglang:num_grammar_queue_reqs', 'sglang:cache_hit_rate', 'sglang:spec_accept_length', 'sglang:prompt_tokens_total',
    'sglang:generation_tokens_total', 'sglang:cached_tokens_total', 'sglang:num_requests_total',
    'sglang:time_to_first_token_seconds_bucket', 'sglang:inter_token_latency_seconds_bucket', 'sglang:e2e_request_latency_seconds_bucket',
  ]) {
    assert.ok(metrics.text.includes(`${name}{`) && new RegExp(`^${name}\\{[^}]*model_name="${MODEL}"`, 'm').test(metrics.text), `metric ${name}`);
  }
  const count = /^sglang:num_requests_total\{model_name="[^"]+"\} (\d+)/m.exec(metrics.text);
  assert.ok(count && Number(count[1]) > 0, 'requests were counted');
  assert.equal((await get('/metrics', baseNoMetrics)).status, 404);
  assert.equal((await get('/no/such/route')).status, 404);
});

test('POST /update_weights_from_disk: SGLang success and failure messages; weight_version follows', async () => {
  const bad = await post('/update_weights_from_disk', { model_path: 'qwen/qwen2.5-0.5b-instruct-wrong' });
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.json, {
    success: false,
    message: 'Failed to get weights iterator: qwen/qwen2.5-0.5b-instruct-wrong (repository not found).',
    num_paused_requests: 0,
  });
  const other = await post('/update_weights_from_disk', { model_path: fixtureModelDir('qwen2-tiny') });
  assert.equal(other.status, 400);
  assert.match((other.json as { message: string }).message, /^Failed to update weights: .*different architecture or shape.*\.\nRolling back to original weights\.$/s);
  const ok = await post('/update_weights_from_disk', { model_path: fixtureModelDir('stories260k'), weight_version: 'v2' });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json, { success: true, message: 'Succeeded to update model weights.', num_paused_requests: 0 });
  const info = await get('/get_model_info');
  assert.equal((info.json as { weight_version: string }).weight_version, 'v2');
  const gen = await post('/generate', { input_ids: golden.generate[0]!.input_ids, sampling_params: { temperature: 0, max_new_tokens: 24, ignore_eos: true } });
  assert.deepEqual((gen.json as { output_ids: number[] }).output_ids, golden.generate[0]!.greedy_ids, 'still serving the same weights');
});

test('--api-key: 401 {"error": "Unauthorized"} without or with a wrong key; health stays open', async () => {
  const missing = await get('/get_model_info', baseKey);
  assert.equal(missing.status, 401);
  assert.deepEqual(missing.json, { error: 'Unauthorized' });
  const wrong = await get('/get_model_info', baseKey, { authorization: 'Bearer nope' });
  assert.equal(wrong.status, 401);
  const right = await get('/get_model_info', baseKey, { authorization: 'Bearer sekrit' });
  assert.equal(right.status, 200);
  const gen = await fetch(baseKey + '/generate', { method: 'POST', headers: { authorization: 'Bearer sekrit' }, body: JSON.stringify({ input_ids: g0.input_ids, sampling_params: greedy(1) }) });
  assert.equal(gen.status, 200);
  const noKeyGen = await fetch(baseKey + '/generate', { method: 'POST', body: JSON.stringify({ input_ids: g0.input_ids, sampling_params: greedy(1) }) });
  assert.equal(noKeyGen.status, 401);
  await noKeyGen.text();
  assert.equal((await get('/health', baseKey)).status, 200);
  assert.equal((await get('/v1/models', baseKey, { authorization: 'bearer sekrit' })).status, 200);
});

test('errors: SGLang\'s statuses and bodies, and the server keeps serving', async () => {
  const openai = (r: { status: number; json: Json }) => {
    assert.equal(r.status, 400);
    assert.equal(r.json.object, 'error');
    assert.equal(r.json.type, 'BadRequestError');
    assert.equal(r.json.param, null);
    assert.equal(r.json.code, 400);
  };
  const valueError = (r: { status: number; json: Json }, message: string | RegExp) => {
    assert.equal(r.status, 400);
    assert.deepEqual(Object.keys(r.json), ['error']);
    if (typeof message === 'string') assert.equal(r.json.error.message, message);
    else assert.match(r.json.error.message, message);
  };
  openai(await post('/generate', '{"text": "abc", '));
  await stillServing();
  openai(await post('/generate', { text: 5 }));
  openai(await post('/generate', { input_ids: ['a'] }));
  openai(await post('/generate', { text: 'a', stream: 'yes' }));
  openai(await post('/generate', '[1, 2]'));
  await stillServing();
  valueError(await post('/generate', { text: 'a', sampling_params: { foo: 1 } }), "Unexpected keyword argument 'foo' in sampling_params.");
  valueError(await post('/generate', { text: 'a', sampling_params: { temperature: -1 } }), /^temperature must be a non-negative/);
  valueError(await post('/generate', { text: 'a', sampling_params: { top_p: 2 } }), /^top_p must be in \(0, 1\]/);
  await stillServing();
  valueError(await post('/generate', { input_ids: Array.from({ length: 600 }, () => 5) }), "The input (600 tokens) is longer than the model's context length (512 tokens).");
  valueError(await post('/generate', {}), 'Either text, input_ids or input_embeds should be provided.');
  valueError(await post('/generate', { input_ids: [] }), 'input_ids cannot be empty.');
  valueError(await post('/generate', { text: 'a', input_ids: [1, 2] }), 'Only one of text or input_ids can be provided.');
  valueError(await post('/generate', { text: 'a', lora_path: 'x' }), 'lora_path is not supported by this server.');
  valueError(await post('/generate', { text: 'a', custom_logit_processor: 'x' }), 'custom_logit_processor is not supported by this server.');
  valueError(await post('/generate', { input_ids: [600] }), /contains values greater than the vocab size \(512\)/);
  valueError(await post('/generate', { text: ['a', 'b'], rid: ['x', 'x'] }), "Duplicate request IDs detected within the request: ['x']");
  // a bad second input refuses the whole batch before any output, and frees the first
  valueError(await post('/generate', { text: ['a', 'b'], sampling_params: [{ max_new_tokens: 2 }, { top_k: 0 }] }), /^top_k must be/);
  // stream: validation errors are plain 400 responses, not SSE
  valueError(await post('/generate', { text: 'a', stream: true, sampling_params: { min_p: 3 } }), /^min_p must be in \[0, 1\]/);
  await settled();
  await stillServing();
});
