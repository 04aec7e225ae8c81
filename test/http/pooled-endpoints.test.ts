// The pooled models' REST endpoints over LocalRuntime over the real ServingEngine, through fetch on
// 127.0.0.1, against transformers' goldens: /encode and /v1/embeddings (qwen2-tiny launched with
// --is-embedding), /v1/rerank (xlmr-reranker-tiny, a cross-encoder), /classify (llama31-reward-tiny);
// SGLang's errors for the wrong kind of endpoint, and the same answers through gRPC (RemoteRuntime).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';

import { NOT_EMBEDDING_MESSAGE, NOT_GENERATION_MESSAGE, ServingEngine } from '../../src/engine/engine.js';
import { createGateway } from '../../src/http/gateway.js';
import { startGrpcServer, type GrpcServerHandle } from '../../src/grpc/server.js';
import { buildServerArgs, LocalRuntime } from '../../src/runtime/local-runtime.js';
import { RemoteRuntime } from '../../src/runtime/remote-runtime.js';
import type { EncodeOutput, RerankItem } from '../../src/runtime/runtime-service.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Served {
  runtime: LocalRuntime;
  app: FastifyInstance;
  base: string;
}
const served: Served[] = [];
let emb: Served; // qwen2-tiny --is-embedding
let rerank: Served; // xlmr-reranker-tiny
let reward: Served; // llama31-reward-tiny
let gen: Served; // stories260k (a generation model)
let grpcHandle: GrpcServerHandle;
let remote: RemoteRuntime;

async function serve(name: string, isEmbedding = false): Promise<Served> {
  const engine = await ServingEngine.create({ modelPath: fixtureModelDir(name), pageSize: 4, maxTotalTokens: 4096, chunkedPrefillSize: 64, isEmbedding, randomSeed: 1 });
  const runtime = new LocalRuntime(engine, { modelPath: name, tokenizerPath: name, servedModelName: name, serverArgs: buildServerArgs(engine, { modelPath: name }) });
  const app = createGateway(runtime);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const s = { runtime, app, base: `http://127.0.0.1:${addr.port}` };
  served.push(s);
  return s;
}

before(async () => {
  emb = await serve('qwen2-tiny', true);
  rerank = await serve('xlmr-reranker-tiny');
  reward = await serve('llama31-reward-tiny');
  gen = await serve('stories260k');
  grpcHandle = await startGrpcServer(rerank.runtime, { host: '127.0.0.1', port: 0 });
  remote = new RemoteRuntime(`127.0.0.1:${grpcHandle.port}`);
});

after(async () => {
  await remote?.close();
  await grpcHandle?.close(500);
  for (const s of served) {
    await s.app.close();
    await s.runtime.close();
  }
});

async function post(base: string, path: string, body: unknown): Promise<{ status: number; json: Json }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

function close(got: number[], want: number[], tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const worst = Math.max(...got.map((g, i) => Math.abs(g - (want[i] as number))));
  assert.ok(worst < tol, `${what}: max |diff| ${worst} >= ${tol}`);
}

const META_KEYS = ['id', 'finish_reason', 'prompt_tokens', 'weight_version', 'total_retractions', 'e2e_latency'];

interface EncodeGolden { text: string; input_ids: number[]; embedding: number[] }
interface RerankGolden { query: string; document: string; input_ids: number[]; logit: number }
interface ClassifyGolden { text: string; input_ids: number[]; score: number }

test('/encode: the L2-normalised last-token hidden state of the goldens, one text, a list, input_ids', async () => {
  const g = loadGolden('qwen2-tiny').encode as EncodeGolden[];
  const one = await post(emb.base, '/encode', { text: g[0]!.text });
  assert.equal(one.status, 200, JSON.stringify(one.json));
  close(one.json.embedding, g[0]!.embedding, 2e-3, 'single text');
  assert.deepEqual(Object.keys(one.json.meta_info), META_KEYS);
  assert.deepEqual(one.json.meta_info.finish_reason, { type: 'length', length: 0 });
  assert.equal(one.json.meta_info.prompt_tokens, g[0]!.input_ids.length);
  const norm = Math.hypot(...(one.json.embedding as number[]));
  assert.ok(Math.abs(norm - 1) < 1e-6, `unit length (${norm})`);

  const list = await post(emb.base, '/encode', { text: g.map((e) => e.text), rid: g.map((_, i) => `e${i}`) });
  assert.equal(list.status, 200);
  assert.equal(list.json.length, g.length);
  g.forEach((e, i) => {
    close(list.json[i].embedding, e.embedding, 2e-3, `list #${i}`);
    assert.equal(list.json[i].meta_info.id, `e${i}`);
  });
  const ids = await post(emb.base, '/encode', { input_ids: g.map((e) => e.input_ids) });
  assert.equal(ids.status, 200);
  g.forEach((e, i) => close(ids.json[i].embedding, e.embedding, 2e-3, `input_ids #${i}`));
});

test('/v1/embeddings: OpenAI shape and usage; its validation messages', async () => {
  const g = loadGolden('qwen2-tiny').encode as EncodeGolden[];
  const r = await post(emb.base, '/v1/embeddings', { model: 'qwen2-tiny', input: g.map((e) => e.text) });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.object, 'list');
  assert.equal(r.json.model, 'qwen2-tiny');
  const tokens = g.reduce((a, e) => a + e.input_ids.length, 0);
  assert.deepEqual(r.json.usage, { prompt_tokens: tokens, total_tokens: tokens, completion_tokens: 0, prompt_tokens_details: null });
  g.forEach((e, i) => {
    assert.equal(r.json.data[i].index, i);
    assert.equal(r.json.data[i].object, 'embedding');
    close(r.json.data[i].embedding, e.embedding, 2e-3, `data #${i}`);
  });
  const byIds = await post(emb.base, '/v1/embeddings', { input: g[1]!.input_ids });
  close(byIds.json.data[0].embedding, g[1]!.embedding, 2e-3, 'token ids');
  for (const [input, message] of [
    ['', 'Input cannot be empty'],
    ['   ', 'Input cannot be empty or whitespace only'],
    [['a', ' '], 'Input at index 1 cannot be empty or whitespace only'],
    [[1, -2], 'Token ID at index 1 must be non-negative'],
    [[[1], []], 'Input at index 1 cannot be empty'],
  ] as const) {
    const bad = await post(emb.base, '/v1/embeddings', { input });
    assert.equal(bad.status, 400, JSON.stringify(input));
    assert.equal(bad.json.object, 'error');
    assert.equal(bad.json.message, message);
  }
  const dim = await post(emb.base, '/v1/embeddings', { input: 'x', dimensions: 3 });
  assert.equal(dim.status, 400);
  assert.match(dim.json.message, /does not support matryoshka representation/);
});

test('a generation endpoint on an embedding server, and /encode on a generation server: SGLang errors, 400, still serving', async () => {
  const g1 = await post(emb.base, '/generate', { text: 'hi', sampling_params: { max_new_tokens: 2 } });
  assert.equal(g1.status, 400);
  assert.deepEqual(g1.json, { error: { message: NOT_GENERATION_MESSAGE } });
  const e1 = await post(gen.base, '/encode', { text: 'hi' });
  assert.equal(e1.status, 400);
  assert.deepEqual(e1.json, { error: { message: NOT_EMBEDDING_MESSAGE } });
  const e2 = await post(gen.base, '/v1/embeddings', { input: 'hi' });
  assert.equal(e2.status, 400);
  assert.equal(e2.json.message, NOT_EMBEDDING_MESSAGE);
  const e3 = await post(gen.base, '/v1/rerank', { query: 'q', documents: ['d'] });
  assert.equal(e3.status, 400);
  // both keep serving
  assert.equal((await post(gen.base, '/generate', { text: 'Once', sampling_params: { max_new_tokens: 2 } })).status, 200);
  assert.equal((await post(emb.base, '/encode', { text: 'Once upon a time' })).status, 200);
  const info = await (await fetch(`${emb.base}/get_model_info`)).json();
  assert.equal(info.is_generation, false);
  assert.equal((await (await fetch(`${emb.base}/health_generate`)).status), 200);
});

test('/v1/rerank: the cross-encoder logits of the goldens, sorted by score, top_n, return_documents, validation', async () => {
  const g = loadGolden('xlmr-reranker-tiny').rerank as RerankGolden[];
  const query = g[0]!.query;
  assert.ok(g.every((e) => e.query === query));
  const docs = g.map((e) => e.document);
  const r = await post(rerank.base, '/v1/rerank', { query, documents: docs });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const items = r.json as RerankItem[];
  assert.equal(items.length, g.length);
  const want = g.map((e, index) => ({ index, logit: e.logit })).sort((a, b) => b.logit - a.logit);
  items.forEach((it, k) => {
    assert.deepEqual(Object.keys(it), ['score', 'document', 'index', 'meta_info']);
    assert.equal(it.index, want[k]!.index, `rank ${k}`);
    assert.ok(Math.abs(it.score - want[k]!.logit) < 1e-3, `doc ${it.index}: ${it.score} vs ${want[k]!.logit}`);
    assert.equal(it.document, docs[it.index]);
    assert.equal(it.meta_info.prompt_tokens, g[it.index]!.input_ids.length);
  });
  const top = await post(rerank.base, '/v1/rerank', { query, documents: docs, top_n: 2, return_documents: false });
  assert.equal(top.json.length, 2);
  assert.deepEqual(Object.keys(top.json[0]), ['score', 'index', 'meta_info']);
  assert.deepEqual(top.json.map((x: RerankItem) => x.index), want.slice(0, 2).map((w) => w.index));
  for (const [body, message] of [
    [{ query: '', documents: ['a'] }, 'Query cannot be empty'],
    [{ query: '  ', documents: ['a'] }, 'Query cannot be empty or whitespace only'],
    [{ query: 'q', documents: [] }, 'Documents cannot be empty'],
    [{ query: 'q', documents: ['a', ''] }, 'Each document must be a non-empty string'],
    [{ query: 'q', documents: ['a', ' '] }, 'Each document cannot be empty or whitespace only'],
    [{ query: 'q', documents: ['a'], top_n: 0 }, 'Value error, parameter top_n should be larger than 0.'],
  ] as const) {
    const bad = await post(rerank.base, '/v1/rerank', body);
    assert.equal(bad.status, 400, JSON.stringify(body));
    assert.equal(bad.json.message, message);
  }
  // positions start at pad_token_id + 1: 512 tokens fit a 514-position encoder, 513 is a clear 400
  const info = await (await fetch(`${rerank.base}/server_info`)).json();
  assert.equal(info.is_embedding, true);
  const fits = await post(rerank.base, '/encode', { input_ids: Array.from({ length: 512 }, (_, i) => 5 + (i % 50)) });
  assert.equal(fits.status, 200, JSON.stringify(fits.json));
  const long = await post(rerank.base, '/encode', { input_ids: Array.from({ length: 513 }, (_, i) => 5 + (i % 50)) });
  assert.equal(long.status, 400);
  assert.match(long.json.error.message, /longer than the model's context length \(513 tokens\)/);
  // /encode on the cross-encoder with [query, document] pairs: the same logits
  const pairs = await post(rerank.base, '/encode', { text: g.map((e) => [e.query, e.document]) });
  assert.equal(pairs.status, 200, JSON.stringify(pairs.json));
  g.forEach((e, i) => assert.ok(Math.abs(pairs.json[i].embedding[0] - e.logit) < 1e-3, `pair ${i}`));
});

test('/classify: the reward of the goldens (templated texts keep one BOS; input_ids as given)', async () => {
  const g = loadGolden('llama31-reward-tiny').classify as ClassifyGolden[];
  const byIds = await post(reward.base, '/classify', { input_ids: g.map((e) => e.input_ids) });
  assert.equal(byIds.status, 200, JSON.stringify(byIds.json));
  g.forEach((e, i) => {
    assert.equal(byIds.json[i].embedding.length, 1);
    assert.ok(Math.abs(byIds.json[i].embedding[0] - e.score) < 1e-3, `#${i}: ${byIds.json[i].embedding[0]} vs ${e.score}`);
  });
  const templated = g.filter((e) => e.text.startsWith('<|begin_of_text|>'));
  assert.ok(templated.length >= 2);
  const byText = await post(reward.base, '/classify', { text: templated.map((e) => e.text) });
  templated.forEach((e, i) => {
    assert.equal(byText.json[i].meta_info.prompt_tokens, e.input_ids.length, 'one BOS');
    assert.ok(Math.abs(byText.json[i].embedding[0] - e.score) < 1e-3, `text #${i}`);
  });
  const single = await post(reward.base, '/classify', { text: templated[0]!.text });
  assert.ok(!Array.isArray(single.json) && Math.abs(single.json.embedding[0] - templated[0]!.score) < 1e-3);
});

test('gRPC: Rerank and Encode through RemoteRuntime answer what the local runtime answers', async () => {
  const g = loadGolden('xlmr-reranker-tiny').rerank as RerankGolden[];
  const req = { query: g[0]!.query, documents: g.map((e) => e.document), top_n: 3 };
  const [viaGrpc, local] = await Promise.all([remote.rerank(req), rerank.runtime.rerank(req)]);
  assert.deepEqual(viaGrpc.map((x) => [x.index, x.score.toFixed(5), x.document]), local.map((x) => [x.index, x.score.toFixed(5), x.document]));
  assert.deepEqual(Object.keys(viaGrpc[0]!.meta_info), META_KEYS);
  const enc = (await remote.encode({ text: g.map((e) => [e.query, e.document]) })) as EncodeOutput[];
  g.forEach((e, i) => assert.ok(Math.abs((enc[i]!.embedding[0] as number) - e.logit) < 1e-3));
  const single = (await remote.encode({ input_ids: g[1]!.input_ids })) as EncodeOutput;
  assert.ok(!Array.isArray(single) && Math.abs((single.embedding[0] as number) - g[1]!.logit) < 1e-3);
  await assert.rejects(remote.rerank({ query: '', documents: ['a'] }), /Query cannot be empty/);
});
