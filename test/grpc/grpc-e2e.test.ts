// End to end: LocalRuntime over the real ServingEngine (stories260k) served over gRPC, reached through
// RemoteRuntime. The greedy golden comes back through gRPC, and the REST gateway answers the same over the
// RemoteRuntime as over the LocalRuntime itself (the same bytes, modulo the request id and timings).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { ServingEngine } from '../../src/engine/engine.js';
import { builtinModelDir } from '../../src/engine/builtin-model.js';
import { LocalRuntime, buildServerArgs } from '../../src/runtime/local-runtime.js';
import { RemoteRuntime } from '../../src/runtime/remote-runtime.js';
import { startGrpcServer, type GrpcServerHandle } from '../../src/grpc/server.js';
import { createGateway } from '../../src/http/gateway.js';
import type { GenerateItem } from '../../src/runtime/runtime-service.js';
import { loadGolden } from '../helpers/fixtures.js';

const golden = loadGolden('stories260k');
const KEY = 'grpc-e2e-key';
let engine: ServingEngine;
let local: LocalRuntime;
let handle: GrpcServerHandle;
let remote: RemoteRuntime;
let restLocal: FastifyInstance;
let restRemote: FastifyInstance;

before(async () => {
  engine = await ServingEngine.create({ pageSize: 4, maxTotalTokens: 4096, chunkedPrefillSize: 64, maxRunningRequests: 16, randomSeed: 1234 });
  const modelPath = builtinModelDir();
  local = new LocalRuntime(engine, { modelPath, tokenizerPath: modelPath, servedModelName: modelPath, serverArgs: buildServerArgs(engine, { modelPath }) });
  handle = await startGrpcServer(local, { host: '127.0.0.1', port: 0, apiKey: KEY });
  remote = new RemoteRuntime(`127.0.0.1:${handle.port}`, { apiKey: KEY });
  restLocal = createGateway(local);
  restRemote = createGateway(remote);
});

after(async () => {
  await restLocal?.close();
  await restRemote?.close();
  await remote?.close();
  await handle?.close(500);
  await local?.close();
});

test('greedy golden through gRPC (RemoteRuntime → server → LocalRuntime → engine)', async () => {
  const g = golden.generate[0]!;
  const { shape, items } = await remote.generate({ input_ids: g.input_ids, sampling_params: { max_new_tokens: 24, temperature: 0, ignore_eos: true } });
  assert.deepStrictEqual(shape, { batch: false, count: 1 });
  const got: GenerateItem[] = [];
  for await (const it of items) got.push(it);
  const last = got.at(-1)!;
  assert.equal(last.final, true);
  assert.deepStrictEqual(last.output.output_ids, g.greedy_ids.slice(0, 24));
  assert.deepStrictEqual(last.output.meta_info.finish_reason, { type: 'length', length: 24 });
});

/** Replaces the fields that differ between two runs of one request (rid, timings) in a JSON body. */
function normalize(body: string): string {
  return body
    .replace(/"id":"[0-9a-f]{32}"/g, '"id":"RID"')
    .replace(/"(e2e_latency|response_sent_to_client_ts)":[0-9.e+-]+/g, '"$1":0');
}

async function both(opts: { method: 'GET' | 'POST'; url: string; payload?: unknown; headers?: Record<string, string> }): Promise<void> {
  const inject = { method: opts.method, url: opts.url, headers: { 'content-type': 'application/json', ...opts.headers }, payload: opts.payload === undefined ? undefined : JSON.stringify(opts.payload) };
  // The radix cache would make the second run's cached_tokens differ: start each run from an empty cache.
  await local.flushCache(5);
  const a = await restLocal.inject(inject);
  await local.flushCache(5);
  const b = await restRemote.inject(inject);
  const what = `${opts.method} ${opts.url} ${JSON.stringify(opts.payload ?? '')}`;
  assert.equal(b.statusCode, a.statusCode, what);
  assert.equal(b.headers['content-type'], a.headers['content-type'], what);
  if (String(a.headers['content-type']).startsWith('text/event-stream')) {
    // How engine steps merge into chunks depends on timing; the framing and each output's last chunk do not.
    assert.equal(lastPerIndex(normalize(b.body)), lastPerIndex(normalize(a.body)), what);
    assert.ok(a.body.endsWith('data: [DONE]\n\n') && b.body.endsWith('data: [DONE]\n\n'), what);
  } else if (String(a.headers['content-type']).startsWith('application/json')) {
    assertSameJson(JSON.parse(normalize(b.body)), JSON.parse(normalize(a.body)), what);
  } else {
    assert.equal(normalize(b.body), normalize(a.body), what);
  }
}

/**
 * Equal JSON, except that non-integer numbers may differ by 1e-5 (relative): the two runs may batch a
 * request's decode steps differently (how the gRPC hop spaces its arrivals), and the CPU GEMM's rounding
 * follows the step's row count in the last bits. Token ids, text and every other field must match exactly.
 */
function assertSameJson(got: unknown, want: unknown, what: string, path = '$'): void {
  if (typeof want === 'number' && typeof got === 'number' && !(Number.isInteger(want) && Number.isInteger(got))) {
    assert.ok(Math.abs(got - want) <= 1e-5 * Math.max(1, Math.abs(want)), `${what}: ${path} ${got} vs ${want}`);
  } else if (Array.isArray(want) && Array.isArray(got)) {
    assert.equal(got.length, want.length, `${what}: ${path} length`);
    want.forEach((w, i) => assertSameJson(got[i], w, what, `${path}[${i}]`));
  } else if (want !== null && typeof want === 'object' && got !== null && typeof got === 'object' && !Array.isArray(got)) {
    assert.deepStrictEqual(Object.keys(got), Object.keys(want), `${what}: ${path} keys`);
    for (const k of Object.keys(want)) assertSameJson((got as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], what, `${path}.${k}`);
  } else {
    assert.deepStrictEqual(got, want, `${what}: ${path}`);
  }
}

function lastPerIndex(sse: string): string {
  const last = new Map<number, string>();
  for (const block of sse.split('\n\n')) {
    if (!block.startsWith('data: {')) continue;
    const obj = JSON.parse(block.slice(6)) as { index?: number };
    last.set(obj.index ?? 0, block);
  }
  return [...last.entries()].sort((x, y) => x[0] - y[0]).map(([, v]) => v).join('\n');
}

test('REST through RemoteRuntime answers what REST through LocalRuntime answers', async () => {
  const g = golden.generate[0]!;
  const greedy = { max_new_tokens: 8, temperature: 0, ignore_eos: true };
  await both({ method: 'POST', url: '/generate', payload: { text: g.text, sampling_params: greedy } });
  await both({ method: 'POST', url: '/generate', payload: { text: [g.text, 'Hello'], sampling_params: greedy, return_logprob: true, top_logprobs_num: 2, return_text_in_logprobs: true, logprob_start_len: 0 } });
  await both({ method: 'POST', url: '/generate', payload: { input_ids: g.input_ids, sampling_params: { ...greedy, n: 2 }, stream: true } });
  await both({ method: 'GET', url: '/get_model_info' });
  await both({ method: 'POST', url: '/tokenize', payload: { prompt: 'Once upon a time', add_special_tokens: false } });
  await both({ method: 'POST', url: '/tokenize', payload: { prompt: ['Once', 'upon a time'] } });
  await both({ method: 'POST', url: '/detokenize', payload: { tokens: g.input_ids } });
  await both({ method: 'POST', url: '/detokenize', payload: { tokens: [g.input_ids, [1, 2]] } });
  await both({ method: 'POST', url: '/detokenize', payload: { tokens: [[1], [2, 'x']] } });
  await both({ method: 'GET', url: '/health' });
  // Errors: the runtime's own messages, status codes and body formats.
  await both({ method: 'POST', url: '/generate', payload: { text: 'x', sampling_params: { temperature: -1 } } });
  await both({ method: 'POST', url: '/generate', payload: { text: 'x', sampling_params: { temperature: 'hot', bogus: 1 } } });
  await both({ method: 'POST', url: '/generate', payload: { text: 'x', sampling_params: { max_new_tokens: 1.5 } } });
  await both({ method: 'POST', url: '/generate', payload: { text: 5 } });
  await both({ method: 'POST', url: '/generate', payload: { text: 'x', lora_path: 'adapter' } });
  await both({ method: 'POST', url: '/generate', payload: { input_ids: Array.from({ length: 600 }, () => 1) } });
  await both({ method: 'POST', url: '/tokenize', payload: { prompt: 3 } });
});

test('cancelling a gRPC generate aborts the request in the engine', async () => {
  const steps0 = engine.stats().steps;
  const ac = new AbortController();
  const { items } = await remote.generate({ text: 'Once upon a time', sampling_params: { max_new_tokens: 400, temperature: 0, ignore_eos: true }, stream: true }, ac.signal);
  let n = 0;
  for await (const _ of items) {
    if (++n === 2) ac.abort();
  }
  for (let i = 0; i < 400; i++) {
    const s = engine.stats();
    if (s.running === 0 && s.waiting === 0 && s.liveNativeRequests === 0) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const s = engine.stats();
  assert.deepStrictEqual([s.running, s.waiting, s.liveNativeRequests], [0, 0, 0], 'the engine dropped the request');
  // 400 tokens take at least 400 forward steps: fewer ran, so the engine stopped the request early.
  assert.ok(s.steps - steps0 < 400, `stopped early (${s.steps - steps0} steps, ${n} items)`);
});
