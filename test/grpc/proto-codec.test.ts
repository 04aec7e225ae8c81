// JSON → proto message → wire bytes (grpc-js/proto-loader serializers) → message → JSON gives the same JSON:
// same keys, same nulls, same values, same key order (JSON.stringify equal), for every message type.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  abortRequestCodec,
  decodeGenerateResponse,
  detokenizeRequestCodec,
  detokenizeResponseCodec,
  embeddingsRequestCodec,
  embeddingsResponseCodec,
  encodeRequestCodec,
  encodeResponseCodec,
  rerankRequestCodec,
  rerankResponseCodec,
  encodeItem,
  encodeShape,
  expertDistributionResponseCodec,
  fromProtoStruct,
  generateRequestCodec,
  listModelsCodec,
  modelInfoCodec,
  scoreRequestCodec,
  scoreResponseCodec,
  tokenizeRequestCodec,
  tokenizeResponseCodec,
  toProtoStruct,
  updateWeightsRequestCodec,
  updateWeightsResponseCodec,
  type ObjectCodec,
  type ProtoMessage,
} from '../../src/runtime/proto-codec.js';
import { runtimeService } from '../../src/grpc/proto.js';
import type { GenerateItem } from '../../src/runtime/runtime-service.js';

const { definition } = runtimeService();

/** Through the real serializers of method `rpc` (request or response side). */
function wire(rpc: string, side: 'request' | 'response', msg: ProtoMessage): ProtoMessage {
  const m = definition[rpc]!;
  const bytes = side === 'request' ? m.requestSerialize(msg) : m.responseSerialize(msg);
  return (side === 'request' ? m.requestDeserialize(bytes) : m.responseDeserialize(bytes)) as ProtoMessage;
}

function roundTrip<T extends object>(codec: ObjectCodec<T>, rpc: string, side: 'request' | 'response', json: T): void {
  const msg = codec.encode(json);
  const back = codec.decode(wire(rpc, side, msg));
  assert.deepStrictEqual(back, json);
  assert.equal(JSON.stringify(back), JSON.stringify(json));
}

const sp = {
  max_new_tokens: 24,
  min_new_tokens: 0,
  temperature: 0,
  top_p: 0.95,
  top_k: -1,
  min_p: 0,
  frequency_penalty: -0.5,
  presence_penalty: 1.25,
  repetition_penalty: 1.1,
  stop: ['\n\n', 'The end'],
  stop_token_ids: [2, 7],
  stop_regex: 'a+b',
  ignore_eos: true,
  skip_special_tokens: false,
  spaces_between_special_tokens: true,
  no_stop_trim: false,
  n: 2,
  json_schema: '{"type":"object"}',
  regex: null,
  ebnf: null,
  structural_tag: null,
  logit_bias: { '5': -1.5, '100': 2 },
  sampling_seed: 9007199254740991,
  stream_interval: 1,
  custom_params: { a: [1, 'x', null, { b: true, c: 0.25 }], z: {} },
};

test('GenerateReqInput: single, batch, nulls, zero values, invalid types and unknown keys round-trip exactly', () => {
  const cases: Record<string, unknown>[] = [
    { text: 'Once upon a time', sampling_params: sp, stream: false, return_logprob: true, logprob_start_len: 0, top_logprobs_num: 2, token_ids_logprob: [1, 2], return_text_in_logprobs: true, rid: 'abc' },
    {
      text: ['a', 'b'],
      sampling_params: [{ temperature: 0 }, { temperature: 0.7, stop: 'x', stop_token_ids: [] }],
      return_logprob: [true, false],
      logprob_start_len: [-1, 0],
      top_logprobs_num: [0, 1],
      token_ids_logprob: [[1], [2, 3]],
      rid: ['r1', 'r2'],
      lora_path: ['l1', 'l2'],
    },
    { input_ids: [1, 2, 3], sampling_params: {} },
    { input_ids: [[1], [2, 3], []] },
    { input_ids: [] },
    { text: [] },
    { text: 'x', sampling_params: null, rid: null, token_ids_logprob: null, stream: null },
    { text: '', sampling_params: { temperature: 0, top_k: 0, n: 0, ignore_eos: false, stop: '', max_new_tokens: 0 }, stream: false, logprob_start_len: 0, return_logprob: false },
    // Not representable in the typed fields: carried as JSON values so the runtime refuses them itself.
    { text: 5, sampling_params: { temperature: 'hot', max_new_tokens: 1.5, bogus: 1, stop: [1], logit_bias: { a: 'x' } }, stream: 'yes', image_data: 'z', custom_logit_processor: 'p' },
    { input_ids: [2 ** 31, 1], sampling_params: { max_new_tokens: 2 ** 40, sampling_seed: 1.5 } },
    { input_ids: [1, [2]], sampling_params: [null, { n: 2 }] },
    { text: 'a', sampling_params: 'not an object' },
    // Key order other than the fields' order is kept.
    { stream: true, text: 'a', sampling_params: { top_p: 0.5, temperature: 0.1 }, extra_key: [1, { x: null }] },
  ];
  for (const c of cases) roundTrip(generateRequestCodec, 'Generate', 'request', c);
});

test('GenerateOutput / MetaInfo: every finish reason, logprobs with null entries and rows, index, batch stream items', () => {
  const base = {
    id: 'bb1f3a0c49c049d495dd8ae5bc90e6c7',
    prompt_tokens: 7,
    weight_version: 'default',
    total_retractions: 0,
    completion_tokens: 3,
    cached_tokens: 0,
    e2e_latency: 1.0261234567891234,
  };
  const reasons: unknown[] = [
    null,
    { type: 'stop', matched: 151643 },
    { type: 'stop', matched: 0 },
    { type: 'stop', matched: '\n\n' },
    { type: 'stop', matched: '' },
    { type: 'stop', matched: null },
    { type: 'length', length: 128 },
    { type: 'abort', message: 'Aborted' },
    { type: 'abort', message: 'Abort by abort_request', status_code: null, err_type: null },
    { type: 'abort', message: 'The input is too long', status_code: 400, err_type: 'BadRequestError' },
  ];
  const lp = {
    input_token_logprobs: [[null, 1, null], [-2.5, 345, 'Once'], [-0.0001220703125, 0, '']],
    output_token_logprobs: [[-1e-9, 7, null], [0, 12, ' upon']],
    input_top_logprobs: [null, [], [[-0.1, 5, 'a'], [-2.3, 6, null]]],
    output_top_logprobs: [[[-0.5, 5, null]], []],
    input_token_ids_logprobs: [null, [[-3, 1, 'x']]],
    output_token_ids_logprobs: [[[-1.5, 2, null], [-9.75, 3, null]]],
  };
  const outputs: Record<string, unknown>[] = [];
  for (const fr of reasons) outputs.push({ text: ' upon a', output_ids: [7, 12, 2], meta_info: { ...base, finish_reason: fr } });
  outputs.push({ text: '', output_ids: [], meta_info: { ...base, finish_reason: null, ...lp }, index: 3 });
  outputs.push({
    text: 'x',
    output_ids: [1],
    meta_info: { id: 'a', finish_reason: { type: 'length', length: 1 }, prompt_tokens: 1, weight_version: 'default', total_retractions: 2, reasoning_tokens: 0, completion_tokens: 1, cached_tokens: 0, cached_tokens_details: null, dp_rank: null, e2e_latency: 0.5, response_sent_to_client_ts: 1777656635.518 },
  });
  // SGLang's order puts the logprobs between total_retractions and completion_tokens in some versions.
  outputs.push({ text: 'y', output_ids: [2], meta_info: { id: 'b', finish_reason: null, prompt_tokens: 1, output_token_logprobs: [[-1, 2, null]], completion_tokens: 1, cached_tokens: 0, e2e_latency: 0, weight_version: 'w', custom_key: { nested: [1, 2] } }, index: 0 });
  for (const out of outputs) {
    for (const final of [false, true]) {
      const item = { index: 5, output: out, final } as unknown as GenerateItem;
      const msg = definition.Generate!.responseDeserialize(definition.Generate!.responseSerialize(encodeItem(item))) as ProtoMessage;
      const back = decodeGenerateResponse(msg);
      assert.ok('item' in back);
      assert.deepStrictEqual(back.item, item);
      assert.equal(JSON.stringify(back.item.output), JSON.stringify(out));
    }
  }
  for (const shape of [{ batch: false, count: 1 }, { batch: true, count: 4 }, { batch: true, count: 0 }]) {
    const msg = definition.Generate!.responseDeserialize(definition.Generate!.responseSerialize(encodeShape(shape))) as ProtoMessage;
    assert.deepStrictEqual(decodeGenerateResponse(msg), { shape });
  }
  // index 0 and final false survive proto3's "zero is absent".
  const zero = { index: 0, output: { text: '', output_ids: [], meta_info: { id: '', finish_reason: null } }, final: false } as unknown as GenerateItem;
  const back = decodeGenerateResponse(definition.Generate!.responseDeserialize(definition.Generate!.responseSerialize(encodeItem(zero))) as ProtoMessage);
  assert.deepStrictEqual(back, { item: zero });
});

test('model info, tokenize, detokenize, score, update weights, abort, models: round trip', () => {
  roundTrip(modelInfoCodec, 'ModelInfo', 'response', {
    model_path: 'qwen/qwen2.5-0.5b-instruct', tokenizer_path: 'qwen/qwen2.5-0.5b-instruct', is_generation: true, preferred_sampling_params: null,
    weight_version: 'default', has_image_understanding: false, has_audio_understanding: false, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'],
  });
  roundTrip(modelInfoCodec, 'ModelInfo', 'response', {
    model_path: '/m', tokenizer_path: null, is_generation: false, preferred_sampling_params: { temperature: 0.7, top_k: 20 },
    weight_version: 'v2', has_image_understanding: false, has_audio_understanding: false, model_type: null, architectures: null,
  });
  for (const r of [{ model: 'm', prompt: 'SGLang', add_special_tokens: false }, { prompt: ['a', ''] }, { prompt: 3 }, { model: null, prompt: [] }]) {
    roundTrip(tokenizeRequestCodec, 'Tokenize', 'request', r as never);
  }
  for (const r of [{ tokens: [50, 3825, 0], count: 3, max_model_len: 131072 }, { tokens: [[1, 2], []], count: [2, 0], max_model_len: 512 }, { tokens: [], count: 0, max_model_len: 0 }]) {
    roundTrip(tokenizeResponseCodec, 'Tokenize', 'response', r);
  }
  for (const r of [{ tokens: [1, 2], skip_special_tokens: true, model: 'm' }, { tokens: [] }, { tokens: ['x'] }]) roundTrip(detokenizeRequestCodec, 'Detokenize', 'request', r as never);
  roundTrip(detokenizeResponseCodec, 'Detokenize', 'response', { text: 'Once upon a time\n' });
  roundTrip(detokenizeResponseCodec, 'Detokenize', 'response', { text: '' });
  for (const r of [
    { model: 'm', query: 'The capital of France is', items: [' Paris', ' London'], label_token_ids: [9454, 2753], apply_softmax: true, item_first: false },
    { query: [1, 2], items: [[3], [4, 5]], label_token_ids: [] },
    { query: 'q', items: 'one' },
    { query: 'q', items: [] },
    { query: null, items: [1, 'a'] },
  ]) roundTrip(scoreRequestCodec, 'Score', 'request', r as never);
  roundTrip(scoreResponseCodec, 'Score', 'response', { scores: [[0.0237, 0.9763], [], [1e-300, 0]], model: 'm', usage: { prompt_tokens: 10, completion_tokens: 0, total_tokens: 10 }, object: 'scoring' });
  roundTrip(scoreResponseCodec, 'Score', 'response', { scores: [], model: 'm', usage: null, object: 'scoring' });
  for (const r of [{ model_path: '/x', load_format: null, abort_all_requests: false, weight_version: null }, { model_path: '/y', weight_version: 'v3' }]) {
    roundTrip(updateWeightsRequestCodec, 'UpdateWeightsFromDisk', 'request', r as never);
  }
  roundTrip(updateWeightsResponseCodec, 'UpdateWeightsFromDisk', 'response', { success: false, message: 'Failed to get weights iterator: x (repository not found).', num_paused_requests: 0 });
  for (const r of [{ rid: 'abc', abort_all: false }, { abort_all: true }, { rid: '' }, {}]) roundTrip(abortRequestCodec, 'AbortRequest', 'request', r);
  roundTrip(listModelsCodec, 'ListModels', 'response', {
    object: 'list',
    data: [{ id: 'stories', object: 'model', created: 1777656635, owned_by: 'sglang', root: '/m', parent: null, max_model_len: 512 }],
  });
});

test('pooled models: Encode / Classify, Embeddings, Rerank requests and responses round-trip exactly', () => {
  for (const r of [
    { text: 'Once upon a time' },
    { model: 'm', text: ['a', 'b'], rid: ['r1', 'r2'] },
    { text: [['what is panda?', 'hi'], ['q', 'd']] },
    { text: ['a', ['q', 'd']] },
    { input_ids: [1, 2, 3], rid: 'x', dimensions: 16 },
    { input_ids: [[1], [2, 3]] },
    { text: null, input_ids: [1] },
    { text: 5, sampling_params: { max_new_tokens: 1 } },
    {},
  ]) roundTrip(encodeRequestCodec, 'Encode', 'request', r as never);
  const meta = { id: 'abc', finish_reason: { type: 'length', length: 0 }, prompt_tokens: 4, weight_version: 'default', total_retractions: 0, e2e_latency: 0.0123 };
  const outs = [{ embedding: [0.25, -0.5, 1e-7, 0], meta_info: meta }, { embedding: [-24.25], meta_info: { ...meta, id: 'def' } }];
  for (const rpc of ['Encode', 'Classify']) {
    for (const v of [outs[0]!, outs, [] as typeof outs]) {
      const back = encodeResponseCodec.decode(wire(rpc, 'response', encodeResponseCodec.encode(v as never)));
      assert.deepStrictEqual(back, v);
      assert.equal(JSON.stringify(back), JSON.stringify(v));
    }
  }
  for (const r of [
    { input: 'hi', model: 'm' },
    { input: ['a', 'b'], encoding_format: 'float', dimensions: null, user: 'u' },
    { input: [1, 2] },
    { input: [[1, 2], [3]] },
    { input: [1, 'x'] },
    { input: '' },
  ]) roundTrip(embeddingsRequestCodec, 'Embeddings', 'request', r as never);
  roundTrip(embeddingsResponseCodec, 'Embeddings', 'response', {
    data: [{ embedding: [0.5, 0.5], index: 0, object: 'embedding' }, { embedding: [], index: 1, object: 'embedding' }],
    model: 'qwen2-tiny',
    object: 'list',
    usage: { prompt_tokens: 11, total_tokens: 11, completion_tokens: 0, prompt_tokens_details: null },
  });
  for (const r of [
    { query: 'what is panda?', documents: ['hi', 'The giant panda'] },
    { model: 'm', query: 'q', documents: [], top_n: 2, return_documents: false },
    { query: 'q', documents: ['a'], top_n: null },
    { query: ['not', 'a string'], documents: 'x' },
  ]) roundTrip(rerankRequestCodec, 'Rerank', 'request', r as never);
  const items = [
    { score: 5.26, document: 'The giant panda', index: 1, meta_info: meta },
    { score: -8.19, index: 0, meta_info: { ...meta, id: 'x' } },
  ];
  for (const v of [items, []]) {
    const back = rerankResponseCodec.decode(wire('Rerank', 'response', rerankResponseCodec.encode(v as never)));
    assert.deepStrictEqual(back, v);
    assert.equal(JSON.stringify(back), JSON.stringify(v));
  }
});

test('expert distribution responses: stat, per_token records, a dense model, nulls and odd values round-trip exactly', () => {
  const stat = {
    mode: 'stat', recording: false, num_layers: 3, num_experts: 2, top_k: 1, moe_layer_ids: [0, 2], buffer_size: -1, num_passes: 9007199254740991,
    logical_count: [[1, 0], [0, 0], [2147483647, 5]], files: ['/tmp/expert_distribution_recorder_1.5.json', '/tmp/expert_distribution_recorder_1.5.csv'],
  };
  for (const rpc of ['StartExpertDistributionRecord', 'StopExpertDistributionRecord', 'DumpExpertDistributionRecord']) {
    roundTrip(expertDistributionResponseCodec, rpc, 'response', { message: 'Start recording the expert distribution.\n' });
  }
  roundTrip(expertDistributionResponseCodec, 'DumpExpertDistributionRecord', 'response', { message: 'Dump expert distribution record.\n', record: stat });
  roundTrip(expertDistributionResponseCodec, 'DumpExpertDistributionRecord', 'response', {
    message: 'x',
    record: {
      ...stat, mode: 'per_token',
      records: [
        { forward_pass_id: 1, rank: 0, gatherer_key: 'primary', global_physical_count: [[1, 0], [0, 0], [0, 1]], num_tokens: 1, topk_ids_of_layer: [[[0]], [[-1]], [[1]]] },
        { forward_pass_id: 2, rank: 0, gatherer_key: 'primary', global_physical_count: [[], [], []] },
      ],
      files: [],
    },
  });
  roundTrip(expertDistributionResponseCodec, 'DumpExpertDistributionRecord', 'response', { message: '', record: { ...stat, logical_count: [[], [], []], moe_layer_ids: [], records: [] } });
  // another key order, nulls, and values outside the typed fields (a float count, a string mode list)
  roundTrip(expertDistributionResponseCodec, 'DumpExpertDistributionRecord', 'response', {
    record: { files: ['a'], logical_count: [[1.5, 2]], mode: ['stat'], recording: null, extra_key: { a: 1 } },
    message: null,
  } as never);
});

test('free-form dicts (server_info, get_load) travel as google.protobuf.Struct', () => {
  const info = {
    model_path: '/m', port: 30000, mem_fraction_static: 0.84, api_key: null, disable_radix_cache: false, status: 'ready',
    internal_states: [{ last_gen_throughput: 149.58, memory_usage: { weight: 1.03, kvcache: 0.23, token_capacity: 20480, graph: 0 } }],
    version: '0.1.0', list: [[], {}, '', -1],
  };
  const msg = definition.ServerInfo!.responseDeserialize(definition.ServerInfo!.responseSerialize({ info: toProtoStruct(info) })) as ProtoMessage;
  assert.equal(JSON.stringify(fromProtoStruct(msg.info)), JSON.stringify(info));
});
