// SGLang's GenerateReqInput normalisation (python/sglang/srt/managers/io_struct.py:
// normalize_batch_and_arguments, _validate_inputs, _determine_batch_size, _handle_parallel_sampling,
// _normalize_rid, _normalize_sampling_params, _normalize_logprob_params, _validate_rid_uniqueness) turned into
// one engine request per input. With n > 1 the engine fans each input out itself (prefix shared), so an input
// here is one engine request and output index i * n + j is input i, sample j (tokenizer_manager's
// _handle_batch_request order).
//
// Two kinds of failures, as SGLang has them:
//  - the body does not match the schema (pydantic): RuntimeError(400, ..., 'openai');
//  - normalisation refuses it (ValueError): RuntimeError(400, ..., 'error').
import { RuntimeError, type GenerateReqInput } from './runtime-service.js';
import { isInt, isIntList, pyRepr } from './py-format.js';

/** One engine request (one input; n samples of it when sampling_params.n > 1). */
export interface NormalizedInput {
  text?: string;
  inputIds?: number[];
  samplingParams: Record<string, unknown>;
  returnLogprob: boolean;
  logprobStartLen: number;
  topLogprobsNum: number;
  tokenIdsLogprob: number[] | null;
  rid: string | undefined;
}

export interface NormalizedGenerate {
  /** The response is a list (list input or n > 1). */
  batch: boolean;
  /** sampling_params.n (the same for every input). */
  n: number;
  inputs: NormalizedInput[];
  stream: boolean;
  returnTextInLogprobs: boolean;
}

/** GenerateReqInput keys that select features this server does not have: refused unless null/false/empty. */
const UNSUPPORTED_KEYS = [
  'input_embeds',
  'image_data',
  'video_data',
  'audio_data',
  'lora_path',
  'lora_id',
  'custom_logit_processor',
  'session_params',
  'session_id',
  'return_hidden_states',
  'return_routed_experts',
  'return_indexer_topk',
  'return_entropy',
  'return_sampling_mask',
  'return_flat_raw_top_logprobs',
  'return_flat_raw_top_logprobs_b64',
  'return_prompt_token_ids',
  'positional_embed_overrides',
  'bootstrap_host',
  'bootstrap_port',
  'bootstrap_room',
  'bootstrap_pair_key',
  'multi_item_delimiter_indices',
  'max_thinking_tokens',
] as const;

const schemaError = (msg: string): RuntimeError => new RuntimeError(400, msg, 'openai');
const valueError = (msg: string): RuntimeError => new RuntimeError(400, msg, 'error');

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const present = (v: unknown): boolean => v !== undefined && v !== null && v !== false && !(Array.isArray(v) && v.length === 0);

function checkSchema(req: Record<string, unknown>): void {
  const bad = (key: string, what: string) => schemaError(`1 validation error for GenerateReqInput: '${key}' must be ${what}.`);
  const { text, input_ids: ids, sampling_params: sp, rid } = req;
  if (text !== undefined && text !== null && typeof text !== 'string' && !(Array.isArray(text) && text.every((t) => typeof t === 'string'))) {
    throw bad('text', 'a string or a list of strings');
  }
  if (ids !== undefined && ids !== null && !isIntList(ids) && !(Array.isArray(ids) && ids.every(isIntList))) {
    throw bad('input_ids', 'a list of integers or a list of lists of integers');
  }
  if (sp !== undefined && sp !== null && !isObject(sp) && !(Array.isArray(sp) && sp.every(isObject))) {
    throw bad('sampling_params', 'an object or a list of objects');
  }
  if (rid !== undefined && rid !== null && typeof rid !== 'string' && !(Array.isArray(rid) && rid.every((r) => typeof r === 'string'))) {
    throw bad('rid', 'a string or a list of strings');
  }
  for (const key of ['stream', 'return_text_in_logprobs', 'log_metrics'] as const) {
    const v = req[key];
    if (v !== undefined && v !== null && typeof v !== 'boolean') throw bad(key, 'a boolean');
  }
  const v = req.return_logprob;
  if (v !== undefined && v !== null && typeof v !== 'boolean' && !(Array.isArray(v) && v.every((b) => typeof b === 'boolean'))) {
    throw bad('return_logprob', 'a boolean or a list of booleans');
  }
  for (const key of ['logprob_start_len', 'top_logprobs_num'] as const) {
    const x = req[key];
    if (x !== undefined && x !== null && !isInt(x) && !isIntList(x)) throw bad(key, 'an integer or a list of integers');
  }
  const t = req.token_ids_logprob;
  if (t !== undefined && t !== null && !isIntList(t) && !(Array.isArray(t) && t.every(isIntList))) {
    throw bad('token_ids_logprob', 'a list of integers or a list of lists of integers');
  }
}

/**
 * Validates and splits a /generate body. Throws RuntimeError(400) with SGLang's message; does not touch the
 * engine (prompt length, sampling_params values and vocabulary checks are the engine's).
 */
export function normalizeGenerateRequest(body: unknown): NormalizedGenerate {
  if (!isObject(body)) throw schemaError('1 validation error for GenerateReqInput: the request body must be a JSON object.');
  const req = body as GenerateReqInput;
  checkSchema(req);
  for (const key of UNSUPPORTED_KEYS) {
    if (present(req[key])) throw valueError(`${key} is not supported by this server.`);
  }

  // _validate_inputs
  const text = req.text ?? null;
  const ids = req.input_ids ?? null;
  if (text === null && ids === null) throw valueError('Either text, input_ids or input_embeds should be provided.');
  if (text !== null && ids !== null) throw valueError('Only one of text or input_ids can be provided.');

  // _determine_batch_size
  let single: boolean;
  let texts: string[] | null = null;
  let idLists: number[][] | null = null;
  if (text !== null) {
    single = typeof text === 'string';
    texts = single ? [text as string] : (text as string[]);
  } else {
    const list = ids as number[] | number[][];
    if (list.length === 0) throw valueError('input_ids cannot be empty.');
    single = isInt(list[0]);
    idLists = single ? [list as number[]] : (list as number[][]);
  }
  const batchSize = (texts ?? idLists!).length;

  // _handle_parallel_sampling
  const sp = req.sampling_params ?? null;
  let n = 1;
  if (isObject(sp)) {
    n = (sp.n ?? 1) as number;
  } else if (Array.isArray(sp) && sp.length > 0) {
    n = ((sp[0] as Record<string, unknown>).n ?? 1) as number;
    for (const p of sp) {
      if (((p as Record<string, unknown>).n ?? 1) !== n) throw valueError('The parallel_sample_num should be the same for all samples in sample params.');
    }
  }
  // n's type and range are checked by the engine (sampling_params.n); only a valid n > 1 makes a batch.
  const fanOut = isInt(n) && n > 1;
  const batch = !single || fanOut;

  // _normalize_rid
  let rids: (string | undefined)[];
  const rid = req.rid ?? null;
  if (!batch) {
    rids = [rid === null ? undefined : (rid as string)];
    if (Array.isArray(rid)) throw valueError('The rid should be a string or a list of strings.');
  } else if (rid === null) {
    rids = Array.from({ length: batchSize }, () => undefined);
  } else if (typeof rid === 'string') {
    rids = Array.from({ length: batchSize }, (_, i) => `${rid}_${i}`);
  } else {
    if (rid.length !== batchSize) throw valueError('The specified rids length mismatch with the batch_size for batch processing.');
    rids = rid;
  }
  const given = rids.filter((r): r is string => r !== undefined);
  if (new Set(given).size !== given.length) {
    const seen = new Set<string>();
    const dups = [...new Set(given.filter((r) => (seen.has(r) ? true : (seen.add(r), false))))];
    throw valueError(`Duplicate request IDs detected within the request: ${pyRepr(dups)}`);
  }

  // _normalize_sampling_params
  let params: Record<string, unknown>[];
  if (sp === null) params = Array.from({ length: batchSize }, () => ({}));
  else if (isObject(sp)) params = Array.from({ length: batchSize }, () => sp);
  else if (!batch) params = [sp as unknown as Record<string, unknown>]; // a list for one prompt: the engine refuses it
  else {
    if (sp.length !== batchSize) throw valueError(`The length of sampling_params (${sp.length}) should be equal to the batch size (${batchSize}).`);
    params = sp;
  }

  // _normalize_logprob_params
  function perInput<T>(value: T | T[] | null | undefined, dflt: T, name: string): T[] {
    if (value === undefined || value === null) return Array.from({ length: batchSize }, () => dflt);
    if (!Array.isArray(value)) return Array.from({ length: batchSize }, () => value);
    if (!batch) throw valueError(`${name} should not be a list for a single request.`);
    if (fanOut) throw valueError(`Cannot use list ${name} with parallel_sample_num > 1`);
    if (value.length !== batchSize) throw valueError(`The length of ${name} (${value.length}) should be equal to the batch size (${batchSize}).`);
    return value;
  }
  const returnLogprob = perInput(req.return_logprob, false, 'return_logprob');
  const logprobStartLen = perInput(req.logprob_start_len, -1, 'logprob_start_len');
  const topLogprobsNum = perInput(req.top_logprobs_num, 0, 'top_logprobs_num');
  let tokenIds: (number[] | null)[];
  const tids = req.token_ids_logprob;
  if (!present(tids)) tokenIds = Array.from({ length: batchSize }, () => null);
  else if (isIntList(tids)) tokenIds = Array.from({ length: batchSize }, () => tids.slice());
  else if (fanOut) throw valueError('Cannot use list token_ids_logprob with parallel_sample_num > 1');
  else {
    const lists = tids as number[][];
    if (lists.length !== batchSize) throw valueError(`The length of token_ids_logprob (${lists.length}) should be equal to the batch size (${batchSize}).`);
    tokenIds = lists.map((l) => (l.length === 0 ? null : l));
  }

  const inputs: NormalizedInput[] = [];
  for (let i = 0; i < batchSize; i++) {
    inputs.push({
      ...(texts !== null ? { text: texts[i] as string } : { inputIds: idLists![i] as number[] }),
      samplingParams: params[i] as Record<string, unknown>,
      returnLogprob: returnLogprob[i] as boolean,
      logprobStartLen: logprobStartLen[i] as number,
      topLogprobsNum: topLogprobsNum[i] as number,
      tokenIdsLogprob: tokenIds[i] ?? null,
      rid: rids[i],
    });
  }
  return {
    batch,
    n: fanOut ? n : 1,
    inputs,
    stream: req.stream === true,
    returnTextInLogprobs: req.return_text_in_logprobs === true,
  };
}
