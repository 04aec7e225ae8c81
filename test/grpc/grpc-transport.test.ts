// The gRPC server over a scripted FakeRuntime, reached by RemoteRuntime and by raw grpc-js clients on
// 127.0.0.1: every RPC's request and response round-trip exactly, errors keep status / message / format,
// API-key refusals, a cancelled stream reaches the runtime's signal, grpc.health.v1 and reflection.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { createRequire } from 'node:module';
import path from 'node:path';
import { startGrpcServer, type GrpcServerHandle } from '../../src/grpc/server.js';
import { RUNTIME_SERVICE, runtimeService } from '../../src/grpc/proto.js';
import { RemoteRuntime } from '../../src/runtime/remote-runtime.js';
import { RuntimeError, type GenerateItem, type GenerateReqInput } from '../../src/runtime/runtime-service.js';
import { FakeRuntime } from './fake-runtime.js';

const KEY = 'sk-test-123';
let fake: FakeRuntime;
let handle: GrpcServerHandle;
let remote: RemoteRuntime;
let target: string;

before(async () => {
  fake = new FakeRuntime();
  handle = await startGrpcServer(fake, { host: '127.0.0.1', port: 0, apiKey: KEY, healthPollMs: 20 });
  target = `127.0.0.1:${handle.port}`;
  remote = new RemoteRuntime(target, { apiKey: KEY });
});

after(async () => {
  await remote?.close();
  await handle?.close(100);
});

const json = (x: unknown) => JSON.stringify(x);

async function collect(items: AsyncIterable<GenerateItem>): Promise<GenerateItem[]> {
  const out: GenerateItem[] = [];
  for await (const it of items) out.push(it);
  return out;
}

function item(index: number, text: string, ids: number[], finish: unknown, final: boolean, extra: Record<string, unknown> = {}): GenerateItem {
  return {
    index,
    output: {
      text,
      output_ids: ids,
      meta_info: { id: `rid${index}`, finish_reason: finish, prompt_tokens: 4, weight_version: 'default', total_retractions: 0, completion_tokens: ids.length, cached_tokens: 0, e2e_latency: 0.0123, ...extra } as never,
    },
    final,
  };
}

test('generate: request reaches the runtime unchanged; shape and items (batch, logprobs, finish reasons) come back exactly', async () => {
  const req: GenerateReqInput = {
    text: ['Once upon a time', 'Hello'],
    sampling_params: [{ temperature: 0, max_new_tokens: 3, ignore_eos: true }, { temperature: 0.5, stop: ['x'], sampling_seed: 7 }],
    return_logprob: true,
    top_logprobs_num: 2,
    token_ids_logprob: [1, 2],
    return_text_in_logprobs: true,
    rid: null,
    stream: true,
    unknown_key: { a: 1 },
  };
  const lp = {
    input_token_logprobs: [[null, 1, '<s>'], [-1.5, 2, 'x']],
    output_token_logprobs: [[-0.25, 9, ' a']],
    input_top_logprobs: [null, [[-1.5, 2, 'x'], [-2, 3, null]]],
    output_top_logprobs: [[[-0.25, 9, ' a']]],
    input_token_ids_logprobs: [null, [[-3, 1, null], [-1.5, 2, null]]],
    output_token_ids_logprobs: [[[-4, 1, null], [-5, 2, null]]],
  };
  fake.generateScript = {
    shape: { batch: true, count: 2 },
    items: [
      item(0, ' a', [9], null, false, lp),
      item(1, 'b', [5], null, false),
      item(0, ' a b', [9, 10], { type: 'length', length: 2 }, true),
      item(1, 'bx', [5, 6], { type: 'stop', matched: 'x' }, true),
    ],
  };
  const { shape, items } = await remote.generate(req);
  assert.deepStrictEqual(shape, { batch: true, count: 2 });
  const got = await collect(items);
  assert.equal(json(got), json(fake.generateScript.items));
  assert.deepStrictEqual(got, fake.generateScript.items);
  assert.equal(json(fake.lastArg('generate')), json(req));
});

test('generate: a validation error before output is a RuntimeError with the same status, message and format', async () => {
  await assert.rejects(remote.generate({ text: 'invalid' }), (e: unknown) => {
    assert.ok(e instanceof RuntimeError);
    assert.equal(e.status, 400);
    assert.equal(e.format, 'error');
    assert.equal(e.message, "The input (99 tokens) is longer than the model's context length (64 tokens).");
    return true;
  });
});

test('generate: a failure mid-stream surfaces from the items iterator after the items before it', async () => {
  fake.generateScript = {
    shape: { batch: false, count: 1 },
    items: [item(0, 'a', [1], null, false)],
    failAfter: new RuntimeError(503, 'engine stopped: résumé "quoted"\nsecond line', 'text'),
  };
  const { items } = await remote.generate({ text: 'x' });
  const seen: GenerateItem[] = [];
  await assert.rejects(
    (async () => {
      for await (const it of items) seen.push(it);
    })(),
    (e: unknown) => {
      assert.ok(e instanceof RuntimeError);
      assert.equal(e.status, 503);
      assert.equal(e.format, 'text');
      assert.equal(e.message, 'engine stopped: résumé "quoted"\nsecond line');
      return true;
    },
  );
  assert.equal(seen.length, 1);
});

test('generate: aborting the signal cancels the call and aborts the runtime request', async () => {
  fake.aborted = false;
  fake.iteratorReturned = false;
  fake.generateScript = { shape: { batch: false, count: 1 }, items: [item(0, 'a', [1], null, false)], hang: true };
  const ac = new AbortController();
  const { items } = await remote.generate({ text: 'x' }, ac.signal);
  const it = items[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.done, false);
  const pending = it.next();
  ac.abort();
  assert.equal((await pending).done, true, 'the stream just ends for the consumer that aborted');
  await fake.whenAborted();
  assert.ok(fake.aborted);
});

test('generate: a consumer that stops iterating early cancels the call', async () => {
  fake.aborted = false;
  fake.generateScript = { shape: { batch: false, count: 1 }, items: [item(0, 'a', [1], null, false)], hang: true };
  const { items } = await remote.generate({ text: 'x' });
  for await (const _ of items) break;
  await fake.whenAborted();
  assert.ok(fake.aborted);
});

test('generate: dropping the items before reading any cancels the call', async () => {
  fake.aborted = false;
  fake.generateScript = { shape: { batch: false, count: 1 }, items: [], hang: true };
  const { items } = await remote.generate({ text: 'x' });
  await items[Symbol.asyncIterator]().return?.();
  await fake.whenAborted();
  assert.ok(fake.aborted);
});

test('unary RPCs: requests arrive unchanged and responses come back exactly', async () => {
  fake.modelInfoResult = {
    model_path: '/m', tokenizer_path: '/m', is_generation: true, preferred_sampling_params: null, weight_version: 'default',
    has_image_understanding: false, has_audio_understanding: false, model_type: 'llama', architectures: ['LlamaForCausalLM'],
  };
  assert.equal(json(await remote.modelInfo()), json(fake.modelInfoResult));

  fake.serverInfoResult = { model_path: '/m', port: 30000, api_key: null, status: 'ready', internal_states: [{ memory_usage: { weight: 0.01 } }], version: '0.1.0' };
  assert.equal(json(await remote.serverInfo()), json(fake.serverInfoResult));

  fake.loadResult = { num_reqs: 0, num_waiting_reqs: 0, num_tokens: 12, dp_rank: null };
  assert.equal(json(await remote.getLoad()), json(fake.loadResult));

  fake.modelsResult = { object: 'list', data: [{ id: 'm', object: 'model', created: 1777656635, owned_by: 'sglang', root: '/m', parent: null, max_model_len: 512 }] };
  assert.equal(json(await remote.listModels()), json(fake.modelsResult));

  for (const [req, res] of [
    [{ model: 'm', prompt: 'SGLang provides', add_special_tokens: false }, { tokens: [50, 3825], count: 2, max_model_len: 131072 }],
    [{ prompt: ['a', 'bc'] }, { tokens: [[1], [2, 3]], count: [1, 2], max_model_len: 512 }],
  ] as const) {
    fake.tokenizeResult = res as never;
    assert.equal(json(await remote.tokenize(req as never)), json(res));
    assert.equal(json(fake.lastArg('tokenize')), json(req));
  }

  fake.detokenizeResult = { text: 'Once upon a time' };
  const dreq = { model: 'm', tokens: [1, 2, 3], skip_special_tokens: false };
  assert.equal(json(await remote.detokenize(dreq)), json(fake.detokenizeResult));
  assert.equal(json(fake.lastArg('detokenize')), json(dreq));

  fake.scoreResult = { scores: [[0.0237, 0.9763], [0.0284, 0.9716]], model: 'm', usage: null, object: 'scoring' };
  const sreq = { model: 'm', query: 'Q', items: [' Paris', ' London'], label_token_ids: [9454, 2753], apply_softmax: true, item_first: false };
  assert.equal(json(await remote.score(sreq)), json(fake.scoreResult));
  assert.equal(json(fake.lastArg('score')), json(sreq));

  fake.updateResult = { success: true, message: 'Succeeded to update model weights.', num_paused_requests: 0 };
  const ureq = { model_path: '/m2', load_format: null, abort_all_requests: false, weight_version: null };
  assert.equal(json(await remote.updateWeightsFromDisk(ureq)), json(fake.updateResult));
  assert.equal(json(fake.lastArg('updateWeightsFromDisk')), json(ureq));

  await remote.abortRequest({ rid: 'abc', abort_all: false });
  assert.equal(json(fake.lastArg('abortRequest')), json({ rid: 'abc', abort_all: false }));

  fake.metricsText = '# HELP sglang:num_running_reqs x\nsglang:num_running_reqs{model_name="m"} 0\n';
  assert.equal(await remote.metrics(), fake.metricsText);

  fake.flushed = false;
  assert.equal(await remote.flushCache(2.5), false);
  assert.equal(fake.lastArg('flushCache'), 2.5);
  fake.flushed = true;
  assert.equal(await remote.flushCache(0), true);

  fake.healthOk = true;
  assert.equal(await remote.healthGenerate(1500), true);
  assert.equal(fake.lastArg('healthGenerate'), 1500);
  fake.healthOk = false;
  assert.equal(await remote.healthGenerate(10), false);

  fake.isReady = false;
  assert.equal(await remote.ready(), false);
  fake.isReady = true;
  assert.equal(await remote.ready(), true);
});

test('expert distribution RPCs: each reaches the runtime with its op; messages and records come back exactly', async () => {
  const statRecord = {
    mode: 'stat', recording: false, num_layers: 2, num_experts: 3, top_k: 2, moe_layer_ids: [1], buffer_size: 1000, num_passes: 24,
    logical_count: [[0, 0, 0], [20, 2147483647, 0]], files: ['/tmp/expert_distribution_recorder_1.5.json', '/tmp/expert_distribution_recorder_1.5.csv'],
  };
  const tokenRecord = {
    ...statRecord, mode: 'per_token', recording: true, buffer_size: -1, num_passes: 2,
    records: [
      { forward_pass_id: 7, rank: 0, gatherer_key: 'primary', global_physical_count: [[0, 0, 0], [2, 1, 1]], num_tokens: 2, topk_ids_of_layer: [[[-1, -1], [-1, -1]], [[0, 1], [2, 0]]] },
      { forward_pass_id: 9007199254740991, rank: 0, gatherer_key: 'primary', global_physical_count: [[], []], num_tokens: 1, topk_ids_of_layer: [[[]], [[1, 1]]] },
    ],
    files: ['/tmp/a_0.json', '/tmp/a_0.csv'],
  };
  const denseRecord = { ...statRecord, num_experts: 0, moe_layer_ids: [], logical_count: [[], [], [], [], []], num_layers: 5, num_passes: 0 };
  for (const [op, res] of [
    ['start', { message: 'Start recording the expert distribution.\n' }],
    ['stop', { message: 'Stop recording the expert distribution.\n' }],
    ['dump', { message: 'Dump expert distribution record.\n', record: statRecord }],
    ['dump', { message: 'Dump expert distribution record.\n', record: tokenRecord }],
    ['dump', { message: 'Dump expert distribution record.\n', record: denseRecord }],
  ] as const) {
    fake.expertResult = res as never;
    assert.equal(json(await remote.expertDistributionRecord(op)), json(res), `${op} ${json(res).slice(0, 60)}`);
    assert.equal(fake.lastArg('expertDistributionRecord'), op);
  }
  // the raw RPC names, and the refusal of a server without a recorder mode
  const { Client } = runtimeService();
  const raw = new Client(target, grpc.credentials.createInsecure()) as unknown as Record<string, Function> & grpc.Client;
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${KEY}`);
  try {
    for (const [rpc, op] of [['StartExpertDistributionRecord', 'start'], ['StopExpertDistributionRecord', 'stop'], ['DumpExpertDistributionRecord', 'dump']] as const) {
      fake.expertResult = { message: `${op}\n` };
      const got = await new Promise<{ message: string }>((resolve, reject) => raw[rpc]!.call(raw, {}, md, (e: grpc.ServiceError | null, r: { message: string }) => (e ? reject(e) : resolve(r))));
      assert.equal(got.message, `${op}\n`);
      assert.equal(fake.lastArg('expertDistributionRecord'), op);
      const off = 'expert distribution recording is off: launch with --expert-distribution-recorder-mode (stat, stat_approx, per_pass or per_token)';
      fake.failNext = new RuntimeError(400, off, 'error');
      const err = await new Promise<grpc.ServiceError>((resolve) => raw[rpc]!.call(raw, {}, md, (e: grpc.ServiceError) => resolve(e)));
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(err.details, off);
      fake.failNext = new RuntimeError(400, off, 'error');
      await assert.rejects(remote.expertDistributionRecord(op), (e: unknown) => e instanceof RuntimeError && e.status === 400 && e.message === off && e.format === 'error');
    }
  } finally {
    raw.close();
  }
});

test('errors: RuntimeError status, message and format survive; gRPC codes follow grpcCodeForStatus; plain errors stay plain', async () => {
  const cases: [RuntimeError, number][] = [
    [new RuntimeError(400, 'max_new_tokens must be at least 0, got -1.', 'error'), grpc.status.INVALID_ARGUMENT],
    [new RuntimeError(400, '[{"loc": ["body"], "msg": "bad"}]', 'openai'), grpc.status.INVALID_ARGUMENT],
    [new RuntimeError(404, 'Not Found', 'error'), grpc.status.NOT_FOUND],
    [new RuntimeError(501, 'not implemented', 'error'), grpc.status.UNIMPLEMENTED],
    [new RuntimeError(503, 'Engine is not ready', 'text'), grpc.status.UNAVAILABLE],
    [new RuntimeError(422, 'unprocessable ✓', 'openai'), grpc.status.UNKNOWN],
    [new RuntimeError(500, 'internal', 'error'), grpc.status.INTERNAL],
  ];
  const { Client } = runtimeService();
  const raw = new Client(target, grpc.credentials.createInsecure()) as unknown as Record<string, Function> & grpc.Client;
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${KEY}`);
  try {
    for (const [err, code] of cases) {
      fake.failNext = err;
      await assert.rejects(remote.modelInfo(), (e: unknown) => {
        assert.ok(e instanceof RuntimeError);
        assert.deepStrictEqual([e.status, e.message, e.format], [err.status, err.message, err.format]);
        return true;
      });
      fake.failNext = err;
      const got = await new Promise<grpc.ServiceError>((resolve) => raw.Tokenize!.call(raw, { prompt: 'x' }, md, (e: grpc.ServiceError) => resolve(e)));
      assert.equal(got.code, code, `HTTP ${err.status} → gRPC ${code}`);
      assert.equal(got.details, err.message);
    }
  } finally {
    raw.close();
  }
  fake.failNext = new TypeError('boom');
  await assert.rejects(remote.serverInfo(), (e: unknown) => {
    assert.ok(!(e instanceof RuntimeError));
    assert.equal((e as Error).message, 'boom');
    return true;
  });
});

test('api key: Runtime RPCs refuse a missing or wrong key (UNAUTHENTICATED, 401 through RemoteRuntime); health stays open', async () => {
  for (const key of [undefined, 'wrong']) {
    const r = new RemoteRuntime(target, { apiKey: key });
    try {
      await assert.rejects(r.modelInfo(), (e: unknown) => e instanceof RuntimeError && e.status === 401 && e.message === 'Unauthorized');
      await assert.rejects(r.generate({ text: 'x' }), (e: unknown) => e instanceof RuntimeError && e.status === 401);
      await assert.rejects(r.ready(), (e: unknown) => e instanceof RuntimeError && e.status === 401);
    } finally {
      await r.close();
    }
  }
  const { Client } = runtimeService();
  const raw = new Client(target, grpc.credentials.createInsecure()) as unknown as Record<string, Function> & grpc.Client;
  const md = new grpc.Metadata();
  md.set('authorization', 'Bearer nope');
  const err = await new Promise<grpc.ServiceError>((resolve) => raw.Ready!.call(raw, {}, md, (e: grpc.ServiceError) => resolve(e)));
  raw.close();
  assert.equal(err.code, grpc.status.UNAUTHENTICATED);
  assert.equal(await healthStatus(RUNTIME_SERVICE), 'SERVING');
});

function healthClient(): grpc.Client & Record<string, Function> {
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  return new Health(target, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
}

async function healthStatus(service: string): Promise<string> {
  const c = healthClient();
  try {
    return await new Promise<string>((resolve, reject) =>
      c.Check!.call(c, { service }, (e: grpc.ServiceError | null, r: { status: string }) => (e ? reject(e) : resolve(r.status))),
    );
  } finally {
    c.close();
  }
}

test('grpc.health.v1: NOT_SERVING while the runtime is not ready, SERVING once it is', async () => {
  fake.isReady = false;
  for (let i = 0; i < 100 && (await healthStatus('')) !== 'NOT_SERVING'; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await healthStatus(''), 'NOT_SERVING');
  assert.equal(await healthStatus(RUNTIME_SERVICE), 'NOT_SERVING');
  fake.isReady = true;
  for (let i = 0; i < 100 && (await healthStatus(RUNTIME_SERVICE)) !== 'SERVING'; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await healthStatus(RUNTIME_SERVICE), 'SERVING');
  assert.equal(await healthStatus(''), 'SERVING');
});

test('server reflection lists the Runtime service and resolves its file', async () => {
  const require = createRequire(import.meta.url);
  const reflectionProto = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
  const def = protoLoader.loadSync(reflectionProto, { keepCase: true, oneofs: true });
  const Refl = (grpc.loadPackageDefinition(def) as any).grpc.reflection.v1.ServerReflection as grpc.ServiceClientConstructor;
  const c = new Refl(target, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
  try {
    const ask = (req: Record<string, unknown>) =>
      new Promise<Record<string, any>>((resolve, reject) => {
        const call = c.ServerReflectionInfo!.call(c) as grpc.ClientDuplexStream<unknown, Record<string, any>>;
        call.on('data', (m) => {
          resolve(m);
          call.end();
        });
        call.on('error', reject);
        call.write(req);
      });
    const listed = await ask({ list_services: '*' });
    const names = (listed.list_services_response.service as { name: string }[]).map((s) => s.name);
    assert.ok(names.includes(RUNTIME_SERVICE), names.join(','));
    const file = await ask({ file_containing_symbol: RUNTIME_SERVICE });
    assert.ok(file.file_descriptor_response.file_descriptor_proto.length > 0);
  } finally {
    c.close();
  }
});
