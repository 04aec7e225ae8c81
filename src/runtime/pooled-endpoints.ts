// The endpoints of pooled models (launched with --is-embedding, or sequence classifiers), over
// ServingEngine.encode: /encode and /classify (SGLang's EmbeddingReqInput and its outputs), /v1/embeddings
// (OpenAI) and /v1/rerank (cross-encoders). Every input of a request is submitted at once, so the scheduler
// batches them into one padding-free step.
//
// SGLang sources mirrored (python/sglang/srt/): managers/io_struct.py EmbeddingReqInput (text or input_ids,
// single or batch; cross-encoder pairs), managers/tokenizer_manager.py (the "not an embedding model"
// ValueError, the embedding meta_info keys: id, finish_reason, prompt_tokens, weight_version,
// total_retractions, e2e_latency), entrypoints/openai/serving_embedding.py (_validate_request's messages,
// usage) and serving_rerank.py (_validate_request, pairs [query, doc], sorted by score, top_n,
// return_documents), http_server.py (/classify is /encode).
import { EngineRequestError, PooledRequestError, type EncodeRequest, type PooledResult, type ServingEngine } from '../engine/engine.js';
import { isInt } from './py-format.js';
import {
  RuntimeError,
  type EmbeddingsReq,
  type EmbeddingsResp,
  type EncodeMetaInfo,
  type EncodeOutput,
  type EncodeReq,
  type RerankItem,
  type RerankReq,
} from './runtime-service.js';

export interface PooledContext {
  engine: ServingEngine;
  weightVersion: string;
  /** The model path (/v1/embeddings reports it as "model", as SGLang does). */
  modelPath: string;
}

const fail = (message: string, format: 'error' | 'openai') => new RuntimeError(400, message, format);

/** Runs the inputs together; engine errors become SGLang's (400 for bad input, 503 while closing). */
async function runAll(ctx: PooledContext, inputs: EncodeRequest[], format: 'error' | 'openai'): Promise<PooledResult[]> {
  let pending: Promise<PooledResult>[];
  try {
    pending = inputs.map((x) => ctx.engine.encode(x));
  } catch (err) {
    throw toRuntimeError(err, format);
  }
  // Every submitted request settles (a result or an abort); wait for all before reporting the first error.
  const settled = await Promise.allSettled(pending);
  const bad = settled.find((s) => s.status === 'rejected');
  if (bad !== undefined) throw toRuntimeError((bad as PromiseRejectedResult).reason, format);
  return settled.map((s) => (s as PromiseFulfilledResult<PooledResult>).value);
}

function toRuntimeError(err: unknown, format: 'error' | 'openai'): unknown {
  if (err instanceof EngineRequestError) return new RuntimeError(400, err.message, format);
  if (err instanceof PooledRequestError) return new RuntimeError(err.statusCode, err.message, format);
  if (err instanceof Error && /the engine is closed|the engine failed/.test(err.message)) return new RuntimeError(503, err.message, format);
  return err;
}

function metaInfo(ctx: PooledContext, r: PooledResult): EncodeMetaInfo {
  return {
    id: r.rid,
    finish_reason: { type: 'length', length: 0 },
    prompt_tokens: r.promptTokens,
    weight_version: ctx.weightVersion,
    total_retractions: 0,
    e2e_latency: r.latency,
  };
}

const isStrList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.every(isInt);
const isIdsList = (v: unknown): v is number[][] => Array.isArray(v) && v.length > 0 && v.every((x) => isIds(x));
const isPair = (v: unknown): v is [string, string] => Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'string');

/** The Matryoshka check of TokenizerManager: only the model's own width can be asked for. */
function checkDimensions(ctx: PooledContext, dimensions: unknown, model: string, format: 'error' | 'openai'): void {
  if (dimensions === undefined || dimensions === null) return;
  if (!isInt(dimensions) || dimensions !== ctx.engine.info.embeddingDim) {
    throw fail(`Model '${model}' does not support matryoshka representation, changing output dimensions will lead to poor results.`, format);
  }
}

/** POST /encode and /classify. */
export async function encode(ctx: PooledContext, req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]> {
  if (typeof req !== 'object' || req === null || Array.isArray(req)) throw fail('The request body must be a JSON object.', 'error');
  const { text, input_ids: ids } = req;
  const hasText = text !== undefined && text !== null;
  const hasIds = ids !== undefined && ids !== null;
  if (!hasText && !hasIds) throw fail('At least one of text, input_ids, or image should be provided', 'error');
  if (hasText && hasIds) throw fail('Only one of text or input_ids can be provided.', 'error');
  checkDimensions(ctx, req.dimensions, typeof req.model === 'string' ? req.model : ctx.modelPath, 'error');
  let inputs: EncodeRequest[];
  let batch: boolean;
  if (hasText) {
    if (typeof text === 'string') {
      inputs = [{ text }];
      batch = false;
    } else if (Array.isArray(text) && text.length > 0 && text.every((t) => typeof t === 'string' || isPair(t))) {
      // a list of texts, or of [query, document] pairs for a cross-encoder
      inputs = (text as (string | [string, string])[]).map((t) => (typeof t === 'string' ? { text: t } : { textPair: t }));
      batch = true;
    } else {
      throw fail('text must be a string, a non-empty list of strings, or a list of [query, document] pairs.', 'error');
    }
  } else if (isIdsList(ids)) {
    inputs = ids.map((x) => ({ inputIds: x }));
    batch = true;
  } else if (isIds(ids) && ids.length > 0) {
    inputs = [{ inputIds: ids }];
    batch = false;
  } else {
    throw fail('input_ids must be a list of integers or a non-empty list of lists of integers.', 'error');
  }
  const rids = req.rid;
  if (rids !== undefined && rids !== null) {
    const list = typeof rids === 'string' ? [rids] : rids;
    if (!isStrList(list) || list.length !== inputs.length) throw fail('rid must be a string, or a list of strings with one per input.', 'error');
    list.forEach((rid, i) => ((inputs[i] as EncodeRequest).rid = rid));
  }
  const results = await runAll(ctx, inputs, 'error');
  const outs = results.map((r) => ({ embedding: r.embedding, meta_info: metaInfo(ctx, r) }));
  return batch ? outs : (outs[0] as EncodeOutput);
}

/** POST /v1/embeddings (OpenAI's API; its error format). */
export async function embeddings(ctx: PooledContext, req: EmbeddingsReq): Promise<EmbeddingsResp> {
  if (typeof req !== 'object' || req === null || Array.isArray(req)) throw fail('The request body must be a JSON object.', 'openai');
  const input = req.input;
  if (input === undefined || input === null || input === '' || (Array.isArray(input) && input.length === 0)) throw fail('Input cannot be empty', 'openai');
  if (req.encoding_format !== undefined && req.encoding_format !== null && req.encoding_format !== 'float') {
    throw fail(`encoding_format '${String(req.encoding_format)}' is not supported (only 'float').`, 'openai');
  }
  checkDimensions(ctx, req.dimensions, typeof req.model === 'string' ? req.model : ctx.modelPath, 'openai');
  let inputs: EncodeRequest[];
  if (typeof input === 'string') {
    if (!input.trim()) throw fail('Input cannot be empty or whitespace only', 'openai');
    inputs = [{ text: input }];
  } else if (!Array.isArray(input)) {
    throw fail('input must be a string, a list of strings, a list of token ids or a list of token id lists.', 'openai');
  } else if (typeof input[0] === 'string') {
    for (let i = 0; i < input.length; i++) {
      const item = input[i];
      if (typeof item !== 'string') throw fail('All items in input list must be strings', 'openai');
      if (!item.trim()) throw fail(`Input at index ${i} cannot be empty or whitespace only`, 'openai');
    }
    inputs = (input as string[]).map((text) => ({ text }));
  } else if (typeof input[0] === 'number') {
    for (let i = 0; i < input.length; i++) {
      const item = input[i];
      if (!isInt(item)) throw fail('All items in input list must be integers', 'openai');
      if ((item as number) < 0) throw fail(`Token ID at index ${i} must be non-negative`, 'openai');
    }
    inputs = [{ inputIds: input as number[] }];
  } else if (Array.isArray(input[0])) {
    for (let i = 0; i < input.length; i++) {
      const item = input[i];
      if (!Array.isArray(item)) throw fail(`Input at index ${i} must be a list`, 'openai');
      if (item.length === 0) throw fail(`Input at index ${i} cannot be empty`, 'openai');
      if (!item.every(isInt)) throw fail(`Input at index ${i} must contain only integers`, 'openai');
      if ((item as number[]).some((t) => t < 0)) throw fail(`Input at index ${i} contains negative token IDs`, 'openai');
    }
    inputs = (input as number[][]).map((inputIds) => ({ inputIds }));
  } else {
    throw fail('input must be a string, a list of strings, a list of token ids or a list of token id lists.', 'openai');
  }
  const results = await runAll(ctx, inputs, 'openai');
  const promptTokens = results.reduce((a, r) => a + r.promptTokens, 0);
  return {
    data: results.map((r, index) => ({ embedding: r.embedding, index, object: 'embedding' as const })),
    model: ctx.modelPath,
    object: 'list',
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens, completion_tokens: 0, prompt_tokens_details: null },
  };
}

/** POST /v1/rerank (cross-encoders; OpenAI's error format, as SGLang's serving_rerank answers). */
export async function rerank(ctx: PooledContext, req: RerankReq): Promise<RerankItem[]> {
  if (typeof req !== 'object' || req === null || Array.isArray(req)) throw fail('The request body must be a JSON object.', 'openai');
  const { query, documents } = req;
  if (query === undefined || query === null || query === '') throw fail('Query cannot be empty', 'openai');
  if (typeof query !== 'string') throw fail('query must be a string.', 'openai');
  if (!query.trim()) throw fail('Query cannot be empty or whitespace only', 'openai');
  if (documents === undefined || documents === null || (Array.isArray(documents) && documents.length === 0)) throw fail('Documents cannot be empty', 'openai');
  if (!Array.isArray(documents)) throw fail('documents must be a list of strings.', 'openai');
  for (const doc of documents as unknown[]) {
    if (typeof doc !== 'string' || doc === '') throw fail('Each document must be a non-empty string', 'openai');
    if (!doc.trim()) throw fail('Each document cannot be empty or whitespace only', 'openai');
  }
  const topN = req.top_n;
  if (topN !== undefined && topN !== null && (!isInt(topN) || topN < 1)) throw fail('Value error, parameter top_n should be larger than 0.', 'openai');
  const returnDocuments = req.return_documents ?? true;
  if (typeof returnDocuments !== 'boolean') throw fail('return_documents must be a boolean.', 'openai');
  if (ctx.engine.info.poolingKind !== 'rerank' && !ctx.engine.info.isGeneration) {
    throw fail('This model is not a cross-encoder: /v1/rerank needs a sequence-pair classifier such as XLMRobertaForSequenceClassification.', 'openai');
  }
  const results = await runAll(ctx, documents.map((doc) => ({ textPair: [query, doc] as [string, string] })), 'openai');
  const items: RerankItem[] = results.map((r, index) => ({
    score: r.embedding[0] as number,
    ...(returnDocuments ? { document: documents[index] as string } : {}),
    index,
    meta_info: metaInfo(ctx, r),
  }));
  items.sort((a, b) => b.score - a.score); // stable: equal scores keep the documents' order
  return topN !== undefined && topN !== null ? items.slice(0, topN) : items;
}
