// The gateway over a scripted RuntimeService: readiness (503 before ready), an error in the middle of a
// stream (SGLang's error event, then [DONE]), RuntimeError formats, and a non-RuntimeError failure.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';

import { createGateway } from '../../src/http/gateway.js';
import { RuntimeError, type GenerateItem, type RuntimeService } from '../../src/runtime/runtime-service.js';

let ready = false;
let app: FastifyInstance;
let base: string;

const output = (text: string, ids: number[], final: boolean) => ({
  text,
  output_ids: ids,
  meta_info: { id: 'r', finish_reason: final ? { type: 'length' as const, length: ids.length } : null, prompt_tokens: 1, completion_tokens: ids.length, cached_tokens: 0, e2e_latency: 0, weight_version: 'default' },
});

const stub: Partial<RuntimeService> = {
  ready: async () => ready,
  healthGenerate: async () => true,
  generate: async (req) => {
    if (req.text === 'bad') throw new RuntimeError(400, 'bad input');
    if (req.text === 'boom') throw new Error('unexpected');
    async function* items(): AsyncGenerator<GenerateItem> {
      yield { index: 0, output: output('a', [1], false), final: false };
      throw new RuntimeError(503, 'The engine is shutting down.', 'openai');
    }
    return { shape: { batch: false, count: 1 }, items: items() };
  },
  serverInfo: async () => {
    throw new RuntimeError(503, 'plain text failure', 'text');
  },
};

before(async () => {
  app = createGateway(stub as RuntimeService);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  base = `http://127.0.0.1:${addr.port}`;
});

after(async () => {
  await app.close();
});

test('/health and /health_generate answer 503 until the runtime is ready', async () => {
  assert.equal((await fetch(base + '/health')).status, 503);
  assert.equal((await fetch(base + '/health_generate')).status, 503);
  ready = true;
  const ok = await fetch(base + '/health');
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), '');
  assert.equal((await fetch(base + '/health_generate')).status, 200);
});

test('an error during a stream is an SSE error event followed by [DONE]', async () => {
  const res = await fetch(base + '/generate', { method: 'POST', body: JSON.stringify({ text: 'x', stream: true }) });
  assert.equal(res.status, 200);
  const text = await res.text();
  const events = text.split('\n\n').filter((e) => e !== '');
  assert.equal(events.length, 3);
  assert.equal(JSON.parse(events[0]!.slice(6)).text, 'a');
  assert.deepEqual(JSON.parse(events[1]!.slice(6)), { error: { message: 'The engine is shutting down.' } });
  assert.equal(events[2], 'data: [DONE]');
});

test('RuntimeError formats; other failures are 500 in the OpenAI error shape', async () => {
  const bad = await fetch(base + '/generate', { method: 'POST', body: JSON.stringify({ text: 'bad', stream: true }) });
  assert.equal(bad.status, 400);
  assert.deepEqual(await bad.json(), { error: { message: 'bad input' } });
  const nonStream = await fetch(base + '/generate', { method: 'POST', body: JSON.stringify({ text: 'x' }) });
  assert.equal(nonStream.status, 503);
  assert.deepEqual(await nonStream.json(), { object: 'error', message: 'The engine is shutting down.', type: '503', param: null, code: 503 });
  const txt = await fetch(base + '/server_info');
  assert.equal(txt.status, 503);
  assert.equal(await txt.text(), 'plain text failure');
  const boom = await fetch(base + '/generate', { method: 'POST', body: JSON.stringify({ text: 'boom' }) });
  assert.equal(boom.status, 500);
  assert.deepEqual(await boom.json(), { object: 'error', message: 'unexpected', type: 'InternalServerError', param: null, code: 500 });
});
