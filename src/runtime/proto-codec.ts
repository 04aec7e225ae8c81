// SGLang's JSON shapes (runtime-service.ts) ⇄ the messages of proto/runtime.proto, as @grpc/proto-loader
// reads and writes them (src/grpc/proto.ts: keepCase, longs as numbers, no defaults, oneof names). Shared by
// the gRPC server (src/grpc/server.ts) and RemoteRuntime, so that encode ∘ decode is the identity on JSON:
//
//  * every contract key is a typed field; an absent key is an unset field (proto3 `optional` or a message);
//  * a single-or-list key is a oneof of `<key>` and `<key>_batch` (list wrapper messages);
//  * a key present with null is listed in `null_keys`;
//  * a key outside the contract, or a value whose JSON type does not fit its typed field, travels as a JSON value
//    in `extra` (google.protobuf.Value), so the runtime on the far side sees the request exactly as sent and
//    refuses it with its own message;
//  * `key_order` is set only when the keys were not in the canonical order (the fields' order), so that a
//    response serialized by JSON.stringify after a round trip is byte-identical.
import type {
  AbortReq,
  DetokenizeReq,
  DetokenizeResp,
  EmbeddingsReq,
  EmbeddingsResp,
  EncodeOutput,
  EncodeReq,
  ExpertDistributionRecordResp,
  GenerateItem,
  GenerateOutput,
  GenerateReqInput,
  GenerateShape,
  RerankItem,
  RerankReq,
  ScoreReq,
  ScoreResp,
  TokenizeReq,
  TokenizeResp,
  UpdateWeightsReq,
  UpdateWeightsResp,
} from './runtime-service.js';

/** A message as proto-loader hands it over / takes it (plain object, snake_case). */
export type ProtoMessage = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------
// google.protobuf.Value / Struct (protobufjs bundles these with camelCase field names, whatever keepCase says)

type ProtoValue = Record<string, unknown>;

export function toProtoValue(v: unknown): ProtoValue {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map((x) => toProtoValue(x)) } };
  if (typeof v === 'object') return { structValue: toProtoStruct(v as Record<string, unknown>) };
  // Not JSON (function, bigint, symbol): what JSON.stringify would make of it inside an array.
  return { nullValue: 'NULL_VALUE' };
}

export function fromProtoValue(p: unknown): unknown {
  const v = (p ?? {}) as ProtoValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.listValue !== undefined) return (((v.listValue as ProtoMessage).values as unknown[]) ?? []).map(fromProtoValue);
  if (v.structValue !== undefined) return fromProtoStruct(v.structValue);
  return null;
}

export function toProtoStruct(obj: Record<string, unknown>): ProtoMessage {
  const fields: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue; // as JSON.stringify
    fields[k] = toProtoValue(v);
  }
  return { fields };
}

export function fromProtoStruct(p: unknown): Record<string, unknown> {
  const fields = ((p ?? {}) as ProtoMessage).fields as Record<string, unknown> | undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields ?? {})) out[k] = fromProtoValue(v);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Kinds: how one JSON value maps onto one proto field value (enc → undefined when it does not fit).

interface Kind {
  enc(v: unknown): unknown;
  dec(p: unknown): unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const str: Kind = { enc: (v) => (typeof v === 'string' ? v : undefined), dec: (p) => p };
const bool: Kind = { enc: (v) => (typeof v === 'boolean' ? v : undefined), dec: (p) => p };
const int32: Kind = {
  enc: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= -2147483648 && v <= 2147483647 && !Object.is(v, -0) ? v : undefined),
  dec: (p) => p,
};
const int64: Kind = {
  enc: (v) => (typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0) ? v : undefined),
  dec: (p) => p,
};
const double: Kind = { enc: (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined), dec: (p) => p };
const struct: Kind = {
  enc: (v) => (isObject(v) && isJson(v) ? toProtoStruct(v) : undefined),
  dec: (p) => fromProtoStruct(p),
};

/** True when JSON.stringify → JSON.parse gives the value back (Struct can carry it exactly). */
function isJson(v: unknown): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0);
  if (Array.isArray(v)) return v.every(isJson);
  if (isObject(v)) return Object.values(v).every((x) => x !== undefined && isJson(x));
  return false;
}

/** A list wrapper message: `{ [field]: [...] }`. */
function list(inner: Kind, field = 'values'): Kind {
  return {
    enc(v) {
      if (!Array.isArray(v)) return undefined;
      const out: unknown[] = [];
      for (const x of v) {
        const e = inner.enc(x);
        if (e === undefined) return undefined;
        out.push(e);
      }
      return { [field]: out };
    },
    dec: (p) => ((((p ?? {}) as ProtoMessage)[field] as unknown[] | undefined) ?? []).map((x) => inner.dec(x)),
  };
}

const strList = list(str);
const boolList = list(bool);
const int32List = list(int32);
const doubleList = list(double);
const tokenIds = list(int32, 'ids');
const tokenIdsList = list(tokenIds, 'items');

/** [logprob | null, token_id, text | null] ⇄ LogprobTriple. */
const triple: Kind = {
  enc(v) {
    if (!Array.isArray(v) || v.length !== 3) return undefined;
    const [lp, id, text] = v as unknown[];
    if (lp !== null && double.enc(lp) === undefined) return undefined;
    if (int32.enc(id) === undefined) return undefined;
    if (text !== null && typeof text !== 'string') return undefined;
    const m: ProtoMessage = { token_id: id };
    if (lp !== null) m.logprob = lp;
    if (text !== null) m.text = text;
    return m;
  },
  dec(p) {
    const m = p as ProtoMessage;
    return [m.logprob ?? null, m.token_id ?? 0, m.text ?? null];
  },
};
const tokenLogprobs = list(triple, 'entries');
/** One row of *_top_logprobs: a list of triples, or null. */
const topRow: Kind = {
  enc(v) {
    if (v === null) return { is_null: true };
    return tokenLogprobs.enc(v);
  },
  dec(p) {
    const m = p as ProtoMessage;
    return m.is_null ? null : tokenLogprobs.dec(m);
  },
};
const topLogprobsList = list(topRow, 'rows');

const logitBias: Kind = {
  enc(v) {
    if (!isObject(v)) return undefined;
    for (const b of Object.values(v)) if (double.enc(b) === undefined) return undefined;
    return { bias: { ...v } };
  },
  dec: (p) => ({ ...((((p ?? {}) as ProtoMessage).bias as Record<string, number> | undefined) ?? {}) }),
};

function message(codec: ObjectCodec<object>): Kind {
  return { enc: (v) => (isObject(v) ? codec.encode(v) : undefined), dec: (p) => codec.decode(p as ProtoMessage) };
}

// ---------------------------------------------------------------------------------------------------------
// Object codecs: one JSON object ⇄ one message with null_keys / extra / key_order.

/** A JSON key and the proto fields that can carry it, tried in order (a oneof when more than one). */
type FieldSpec = [key: string, ...alternatives: [field: string, kind: Kind][]];

export class ObjectCodec<T extends object> {
  private readonly byKey: Map<string, [string, Kind][]>;

  constructor(private readonly specs: FieldSpec[]) {
    this.byKey = new Map(specs.map(([key, ...alts]) => [key, alts]));
  }

  encode(obj: T): ProtoMessage {
    const msg: ProtoMessage = {};
    const nullKeys: string[] = [];
    const extra: Record<string, ProtoValue> = {};
    const order: string[] = [];
    for (const [key, v] of Object.entries(obj)) {
      if (v === undefined) continue; // JSON.stringify drops it
      order.push(key);
      const alts = this.byKey.get(key);
      if (alts && v === null) {
        nullKeys.push(key);
        continue;
      }
      let done = false;
      for (const [field, kind] of alts ?? []) {
        const e = kind.enc(v);
        if (e !== undefined) {
          msg[field] = e;
          done = true;
          break;
        }
      }
      if (!done) extra[key] = toProtoValue(v);
    }
    if (nullKeys.length) msg.null_keys = nullKeys;
    if (Object.keys(extra).length) msg.extra = extra;
    const canonical = this.canonicalOrder(new Set(order), Object.keys(extra));
    if (canonical.some((k, i) => k !== order[i])) msg.key_order = order;
    return msg;
  }

  decode(msg: ProtoMessage | null | undefined): T {
    const m = msg ?? {};
    const nulls = new Set((m.null_keys as string[] | undefined) ?? []);
    const out: Record<string, unknown> = {};
    for (const [key, ...alts] of this.specs) {
      if (nulls.has(key)) {
        out[key] = null;
        continue;
      }
      for (const [field, kind] of alts) {
        const p = m[field];
        if (p !== undefined && p !== null) {
          out[key] = kind.dec(p);
          break;
        }
      }
    }
    for (const [k, v] of Object.entries((m.extra as Record<string, unknown> | undefined) ?? {})) out[k] = fromProtoValue(v);
    const order = m.key_order as string[] | undefined;
    if (order?.length) {
      const sorted: Record<string, unknown> = {};
      for (const k of order) if (k in out) sorted[k] = out[k];
      for (const k of Object.keys(out)) if (!(k in sorted)) sorted[k] = out[k];
      return sorted as T;
    }
    return out as T;
  }

  private canonicalOrder(present: Set<string>, extraKeys: string[]): string[] {
    const known = this.specs.map(([k]) => k).filter((k) => present.has(k));
    return [...known, ...extraKeys];
  }
}

const one = (key: string, kind: Kind): FieldSpec => [key, [key, kind]];
const either = (key: string, single: Kind, batch: Kind): FieldSpec => [key, [key, single], [`${key}_batch`, batch]];

// ---------------------------------------------------------------------------------------------------------
// The messages.

export const samplingParamsCodec = new ObjectCodec<Record<string, unknown>>([
  one('max_new_tokens', int32),
  one('min_new_tokens', int32),
  one('temperature', double),
  one('top_p', double),
  one('top_k', int32),
  one('min_p', double),
  one('frequency_penalty', double),
  one('presence_penalty', double),
  one('repetition_penalty', double),
  either('stop', str, strList),
  one('stop_token_ids', tokenIds),
  either('stop_regex', str, strList),
  one('ignore_eos', bool),
  one('skip_special_tokens', bool),
  one('spaces_between_special_tokens', bool),
  one('no_stop_trim', bool),
  one('n', int32),
  one('json_schema', str),
  one('regex', str),
  one('ebnf', str),
  one('structural_tag', str),
  one('logit_bias', logitBias),
  one('sampling_seed', int64),
  one('stream_interval', int32),
  one('custom_params', struct),
]);

export const generateRequestCodec = new ObjectCodec<GenerateReqInput>([
  either('text', str, strList),
  either('input_ids', tokenIds, tokenIdsList),
  either('sampling_params', message(samplingParamsCodec), list(message(samplingParamsCodec), 'items')),
  one('stream', bool),
  either('return_logprob', bool, boolList),
  either('logprob_start_len', int32, int32List),
  either('top_logprobs_num', int32, int32List),
  either('token_ids_logprob', tokenIds, tokenIdsList),
  one('return_text_in_logprobs', bool),
  either('rid', str, strList),
  one('custom_logit_processor', str),
  either('lora_path', str, strList),
]);

export const finishReasonCodec = new ObjectCodec<Record<string, unknown>>([
  one('type', str),
  ['matched', ['matched_token', int32], ['matched_str', str]],
  one('length', int32),
  one('message', str),
  one('status_code', int32),
  one('err_type', str),
]);

export const metaInfoCodec = new ObjectCodec<Record<string, unknown>>([
  one('id', str),
  one('finish_reason', message(finishReasonCodec)),
  one('prompt_tokens', int32),
  one('weight_version', str),
  one('total_retractions', int32),
  one('reasoning_tokens', int32),
  one('completion_tokens', int32),
  one('cached_tokens', int32),
  one('cached_tokens_details', struct),
  one('dp_rank', int32),
  one('e2e_latency', double),
  one('input_token_logprobs', tokenLogprobs),
  one('output_token_logprobs', tokenLogprobs),
  one('input_top_logprobs', topLogprobsList),
  one('output_top_logprobs', topLogprobsList),
  one('input_token_ids_logprobs', topLogprobsList),
  one('output_token_ids_logprobs', topLogprobsList),
  one('response_sent_to_client_ts', double),
]);

export const generateOutputCodec = new ObjectCodec<GenerateOutput>([
  one('text', str),
  one('output_ids', tokenIds),
  one('meta_info', message(metaInfoCodec)),
  one('index', int32),
]);

export const modelInfoCodec = new ObjectCodec<Record<string, unknown>>([
  one('model_path', str),
  one('tokenizer_path', str),
  one('is_generation', bool),
  one('preferred_sampling_params', struct),
  one('weight_version', str),
  one('has_image_understanding', bool),
  one('has_audio_understanding', bool),
  one('model_type', str),
  one('architectures', strList),
]);

export const updateWeightsRequestCodec = new ObjectCodec<UpdateWeightsReq>([
  one('model_path', str),
  one('load_format', str),
  one('abort_all_requests', bool),
  one('weight_version', str),
]);

export const updateWeightsResponseCodec = new ObjectCodec<UpdateWeightsResp>([
  one('success', bool),
  one('message', str),
  one('num_paused_requests', int32),
]);

export const tokenizeRequestCodec = new ObjectCodec<TokenizeReq>([
  one('model', str),
  either('prompt', str, strList),
  one('add_special_tokens', bool),
]);

export const tokenizeResponseCodec = new ObjectCodec<TokenizeResp>([
  either('tokens', tokenIds, tokenIdsList),
  either('count', int32, int32List),
  one('max_model_len', int32),
]);

export const detokenizeRequestCodec = new ObjectCodec<DetokenizeReq>([
  one('model', str),
  either('tokens', tokenIds, tokenIdsList),
  one('skip_special_tokens', bool),
]);

export const detokenizeResponseCodec = new ObjectCodec<DetokenizeResp>([either('text', str, strList)]);

export const scoreRequestCodec = new ObjectCodec<ScoreReq>([
  one('model', str),
  ['query', ['query', str], ['query_ids', tokenIds]],
  ['items', ['items', str], ['items_batch', strList], ['items_ids_batch', tokenIdsList]],
  one('label_token_ids', tokenIds),
  one('apply_softmax', bool),
  one('item_first', bool),
]);

const scoreUsageCodec = new ObjectCodec<Record<string, unknown>>([
  one('prompt_tokens', int32),
  one('completion_tokens', int32),
  one('total_tokens', int32),
]);

export const scoreResponseCodec = new ObjectCodec<ScoreResp>([
  one('scores', list(doubleList, 'rows')),
  one('model', str),
  one('usage', message(scoreUsageCodec)),
  one('object', str),
]);

// ---- pooled models

/** One /encode text input: a string, or a [query, document] pair. */
const textInput: Kind = {
  enc(v) {
    if (typeof v === 'string') return { text: v };
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return { pair: { texts: v } };
    return undefined;
  },
  dec(p) {
    const m = (p ?? {}) as ProtoMessage;
    if (m.pair !== undefined && m.pair !== null) return [...((((m.pair as ProtoMessage).texts as string[] | undefined) ?? []))];
    return m.text ?? '';
  },
};

export const encodeRequestCodec = new ObjectCodec<EncodeReq>([
  one('model', str),
  either('text', str, list(textInput, 'items')),
  either('input_ids', tokenIds, tokenIdsList),
  either('rid', str, strList),
  one('dimensions', int32),
]);

export const encodeOutputCodec = new ObjectCodec<EncodeOutput>([
  one('embedding', doubleList),
  one('meta_info', message(metaInfoCodec)),
]);

/** EncodeResponse: one output, or the list of a list input. */
export const encodeResponseCodec = {
  encode(v: EncodeOutput | EncodeOutput[]): ProtoMessage {
    return Array.isArray(v) ? { output_batch: { items: v.map((o) => encodeOutputCodec.encode(o)) } } : { output: encodeOutputCodec.encode(v) };
  },
  decode(m: ProtoMessage): EncodeOutput | EncodeOutput[] {
    if (m.output_batch !== undefined && m.output_batch !== null) {
      return (((m.output_batch as ProtoMessage).items as ProtoMessage[] | undefined) ?? []).map((x) => encodeOutputCodec.decode(x));
    }
    return encodeOutputCodec.decode(m.output as ProtoMessage | undefined);
  },
};

export const embeddingsRequestCodec = new ObjectCodec<EmbeddingsReq>([
  one('model', str),
  ['input', ['input', str], ['input_batch', strList], ['input_ids', tokenIds], ['input_ids_batch', tokenIdsList]],
  one('encoding_format', str),
  one('dimensions', int32),
  one('user', str),
]);

const embeddingObjectCodec = new ObjectCodec<Record<string, unknown>>([
  one('embedding', doubleList),
  one('index', int32),
  one('object', str),
]);

const embeddingsUsageCodec = new ObjectCodec<Record<string, unknown>>([
  one('prompt_tokens', int32),
  one('total_tokens', int32),
  one('completion_tokens', int32),
  one('prompt_tokens_details', struct),
]);

export const embeddingsResponseCodec = new ObjectCodec<EmbeddingsResp>([
  one('data', list(message(embeddingObjectCodec), 'items')),
  one('model', str),
  one('object', str),
  one('usage', message(embeddingsUsageCodec)),
]);

export const rerankRequestCodec = new ObjectCodec<RerankReq>([
  one('model', str),
  one('query', str),
  one('documents', strList),
  one('top_n', int32),
  one('return_documents', bool),
]);

const rerankItemCodec = new ObjectCodec<RerankItem>([
  one('score', double),
  one('document', str),
  one('index', int32),
  one('meta_info', message(metaInfoCodec)),
]);

/** RerankResponse: the JSON list. */
export const rerankResponseCodec = {
  encode: (v: RerankItem[]): ProtoMessage => ({ items: v.map((x) => rerankItemCodec.encode(x)) }),
  decode: (m: ProtoMessage): RerankItem[] => ((m.items as ProtoMessage[] | undefined) ?? []).map((x) => rerankItemCodec.decode(x)),
};

export const abortRequestCodec = new ObjectCodec<AbortReq>([one('rid', str), one('abort_all', bool)]);

const modelCardCodec = new ObjectCodec<Record<string, unknown>>([
  one('id', str),
  one('object', str),
  one('created', int64),
  one('owned_by', str),
  one('root', str),
  one('parent', str),
  one('max_model_len', int32),
]);

export const listModelsCodec = new ObjectCodec<Record<string, unknown>>([
  one('object', str),
  one('data', list(message(modelCardCodec), 'items')),
]);

// ---- expert distribution recorder

const int32Matrix = list(int32List, 'rows');
const int32Tensor3 = list(int32Matrix, 'items');

const expertPassRecordCodec = new ObjectCodec<Record<string, unknown>>([
  one('forward_pass_id', int64),
  one('rank', int32),
  one('gatherer_key', str),
  one('num_tokens', int32),
  one('global_physical_count', int32Matrix),
  one('topk_ids_of_layer', int32Tensor3),
]);

const expertRecordCodec = new ObjectCodec<Record<string, unknown>>([
  one('mode', str),
  one('recording', bool),
  one('num_layers', int32),
  one('num_experts', int32),
  one('top_k', int32),
  one('moe_layer_ids', int32List),
  one('buffer_size', int64),
  one('num_passes', int64),
  one('logical_count', int32Matrix),
  one('records', list(message(expertPassRecordCodec), 'items')),
  one('files', strList),
]);

/** Start / Stop / DumpExpertDistributionRecord responses: {message, record?}. */
export const expertDistributionResponseCodec = new ObjectCodec<ExpertDistributionRecordResp>([
  one('message', str),
  one('record', message(expertRecordCodec)),
]);

// ---------------------------------------------------------------------------------------------------------
// Generate stream messages.

export function encodeShape(shape: GenerateShape): ProtoMessage {
  return { shape: { batch: shape.batch, count: shape.count } };
}

export function encodeItem(item: GenerateItem): ProtoMessage {
  return { item: { index: item.index, output: generateOutputCodec.encode(item.output), final: item.final } };
}

/** A GenerateResponse: the shape (first message) or an item. */
export function decodeGenerateResponse(msg: ProtoMessage): { shape: GenerateShape } | { item: GenerateItem } {
  if (msg.shape !== undefined && msg.shape !== null) {
    const s = msg.shape as ProtoMessage;
    return { shape: { batch: Boolean(s.batch), count: (s.count as number | undefined) ?? 0 } };
  }
  const it = (msg.item ?? {}) as ProtoMessage;
  return {
    item: {
      index: (it.index as number | undefined) ?? 0,
      output: generateOutputCodec.decode(it.output as ProtoMessage | undefined),
      final: Boolean(it.final),
    },
  };
}
