// The serving engine front: what the HTTP / gRPC layers call for SGLang's /generate.
//
// generate(req) validates the request up front (SGLang's messages, thrown synchronously), tokenizes, submits
// it to the native engine (addon/napi/native_engine.cc) and returns an async iterator of GenerateChunk.
// The native engine runs its scheduler on its own thread and calls onStep on the JS thread once per step with
// the step's events as typed arrays; the handler dispatches them by numeric rid to the samples, which
// detokenize, match stop strings and queue chunks for their consumers.
//
// SGLang sources mirrored (sgl-project/sglang, python/sglang/srt/):
//  - managers/tokenizer_manager.py: _validate_one_request (prompt vs context length, prompt + max_new_tokens
//    vs context length, the latter only when max_new_tokens was given), _validate_input_ids_in_vocab,
//    _handle_batch_request (n > 1: a prefill-only copy with max_new_tokens 0 first, awaited, so the
//    samples share the prompt's cached pages; then n copies with fresh uuid rids and the same sampling
//    params, so samples with the same sampling_seed are identical, as in SGLang);
//  - managers/io_struct.py: rid defaults to uuid4().hex;
//  - managers/scheduler.py: logprob_start_len -1 (or = prompt length) means no prompt logprobs, and a
//    start beyond the prompt is an error;
//  - configs/model_config.py: default sampling params from generation_config.json (temperature, top_p,
//    top_k, min_p, repetition_penalty);
//  - managers/detokenizer_manager.py, schedule_batch.py: see sample-state.ts.
//
// Where this front differs from SGLang, on purpose:
//  - with the radix cache disabled, n > 1 skips the prefill-only request (it could not share anything);
//  - abort(rid) of an n > 1 request aborts all its samples (SGLang drops the original rid for n > 1), and
//    abort(sample id) aborts one;
//  - among several stop strings present, the earliest in the text wins (SGLang: the first in list order);
//  - streamed deltas hold back a tail that may begin a stop string (see stop-matcher.ts);
//  - a lagging consumer gets one merged chunk per sample instead of a backlog (generate-stream.ts).
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import {
  cudaAvailable,
  loadAddon,
  type ModelInfo,
  type NativeEngine,
  type NativeEngineStats,
  type NativeExpertRecord,
  type NativeRequest,
  type NativeStepOutput,
} from '../native/addon.js';
import { resolveEngineOptions, type ResolvedEngineOptions, type ServingEngineOptions } from './engine-options.js';
import type { GenerateChunk, StepTiming } from './engine-output.js';
import { GenerateStream } from './generate-stream.js';
import { PooledRequests, type PooledResult } from './pooled.js';
import { loopSpinFor, type LoopSpin } from './loop-spin.js';
import { FINISH_ABORT, FINISH_NONE, SampleState, type SampleConfig, type SampleHost } from './sample-state.js';
import { normalizeSamplingParams, SamplingParamsError, type SamplingDefaults, type SamplingParams } from './sampling-params.js';
import { StopMatcher } from './stop-matcher.js';
import { TextTokenizer } from './tokenizer.js';

export type { GenerateChunk, FinishReason, LogprobTriple, StepTiming } from './engine-output.js';
export type { ServingEngineOptions } from './engine-options.js';
export { GenerateStream } from './generate-stream.js';
export { PooledRequestError, type PooledResult } from './pooled.js';
export { SamplingParamsError } from './sampling-params.js';

/** A bad request (the HTTP layer answers 400 with {"error": {"message": ...}}). */
export class EngineRequestError extends Error {}

/** One /generate request for one prompt (the HTTP layer splits batches). snake_case names are SGLang's. */
export interface GenerateRequest {
  /** text: the prompt, tokenized with the model's tokenizer (special tokens added). Exactly one of text / inputIds. */
  text?: string;
  /** input_ids: the prompt as token ids. */
  inputIds?: readonly number[];
  /** sampling_params: SGLang's raw object (validated here). */
  samplingParams?: unknown;
  /** return_logprob (default false). */
  returnLogprob?: boolean;
  /** logprob_start_len (default -1 = no prompt logprobs). */
  logprobStartLen?: number;
  /** top_logprobs_num (default 0). */
  topLogprobsNum?: number;
  /** token_ids_logprob: ids whose logprobs are reported at every position. */
  tokenIdsLogprob?: readonly number[] | null;
  /** return_text_in_logprobs (default false). */
  returnTextInLogprobs?: boolean;
  /** rid (default a uuid4 hex). With n > 1 each sample gets its own uuid; abort(rid) still aborts them all. */
  rid?: string;
  /** stream (default true): a chunk per step with new data; false: only each sample's final chunk. */
  stream?: boolean;
}

/** One /encode, /classify, /v1/embeddings or /v1/rerank input: text, token ids, or a (query, document) pair. */
export interface EncodeRequest {
  text?: string;
  inputIds?: readonly number[];
  /** A cross-encoder pair, tokenized with the tokenizer's pair template (<s> A </s></s> B </s>). */
  textPair?: readonly [string, string];
  rid?: string;
}

export interface ServingEngineStats extends NativeEngineStats {
  /** generate() calls whose streams have not ended. */
  activeRequests: number;
  /** Native requests the front still tracks (submitted, not finished). */
  liveNativeRequests: number;
}

/** Totals of the onStep handler's own time, for benchmarks. */
export interface CallbackStats {
  steps: number;
  events: number;
  totalCallbackUs: number;
}

/** One generate() call: its samples, and for n > 1 the prefill-only request that runs first. */
class RequestGroup {
  samples: SampleState[] = [];
  unfinished = 0;
  prefillRid = -1; // numeric rid of the prefill-only request while it runs
  abortRequested = false; // abort() during the prefill stage
  done = false;
  constructor(
    readonly rid: string,
    readonly stream: GenerateStream,
    readonly native: NativeRequest | null, // template for the samples, kept while the prefill stage runs
    readonly sampleRids: string[],
  ) {}
}

const ABORT_MESSAGE = 'Aborted'; // SGLang's FINISH_ABORT default message
const SHUTDOWN_MESSAGE = 'The engine is shutting down.';
// The native engine aborts on its own only a request that cannot fit in the KV cache even when running alone.
const NOT_SCHEDULABLE_MESSAGE = 'The request does not fit in the KV cache (max_total_tokens) even when running alone.';
// SGLang's TokenizerManager answers an EmbeddingReqInput on a generation model with this (ValueError: 400).
export const NOT_EMBEDDING_MESSAGE =
  'This model does not appear to be an embedding model by default. Please add `--is-embedding` when launching the server or try another model.';
export const NOT_GENERATION_MESSAGE =
  'This model is not a generation model (it serves embeddings, rewards or rerank scores): use /encode, /v1/embeddings, /classify or /v1/rerank.';

/** SGLang's Python repr of an int list, for messages quoting input_ids. */
const pyList = (xs: readonly unknown[]): string => `[${xs.join(', ')}]`;

export class ServingEngine {
  /** The served model (replaced by updateWeights). */
  info: ModelInfo;
  readonly tokenizer: TextTokenizer;
  readonly options: ResolvedEngineOptions;
  /** Sampling defaults taken from the model's generation_config.json. */
  readonly samplingDefaults: SamplingDefaults;
  readonly callbackStats: CallbackStats = { steps: 0, events: 0, totalCallbackUs: 0 };

  private readonly native: NativeEngine;
  private readonly live = new Map<number, SampleState>(); // numeric rid -> running sample
  private readonly prefills = new Map<number, RequestGroup>(); // numeric rid -> n > 1 prefill stage
  private readonly groups = new Map<string, RequestGroup>(); // rid and sample rids -> request
  private nextNumRid = 1;
  private stepNo = 0;
  private readonly touched: SampleState[] = [];
  private closing = false;
  private closed = false;
  private failure: string | null = null; // the native engine's fatal error
  private readonly tokenTexts = new Map<number, string>();
  private readonly host: SampleHost;
  private readonly pooled: PooledRequests;
  private readonly loopSpin: LoopSpin | null;

  private constructor(native: NativeEngine, tokenizer: TextTokenizer, options: ResolvedEngineOptions) {
    this.native = native;
    this.tokenizer = tokenizer;
    this.options = options;
    this.info = native.info();
    this.samplingDefaults = defaultsFromGenerationConfig(this.info.generationConfigJson);
    this.pooled = new PooledRequests(this.info.poolingKind === 'embedding');
    this.loopSpin = loopSpinFor(this.info.backend);
    this.host = {
      nativeAbort: (rid) => this.native.abort(rid),
      abortMessage: (s) =>
        this.closing
          ? { message: SHUTDOWN_MESSAGE, statusCode: 503 }
          : s.abortRequested
            ? { message: ABORT_MESSAGE, statusCode: null }
            : { message: NOT_SCHEDULABLE_MESSAGE, statusCode: 400 },
      tokenText: (id) => this.tokenText(id),
      sampleFinished: (s) => this.onSampleFinished(s),
    };
  }

  /** Loads the tokenizer and the model and starts the native engine thread. */
  static async create(opts: ServingEngineOptions = {}): Promise<ServingEngine> {
    const addon = loadAddon();
    const options = resolveEngineOptions(opts, cudaAvailable(addon));
    const tokenizer = await TextTokenizer.load(options.tokenizerPath);
    if (typeof addon.NativeEngine !== 'function') throw new Error('the native addon has no NativeEngine (rebuild the addon)');
    let engine: ServingEngine | undefined;
    const pending: NativeStepOutput[] = [];
    const native = new addon.NativeEngine({
      modelPath: options.modelPath,
      numPages: options.numPages,
      pageSize: options.pageSize,
      chunkedPrefillSize: options.chunkedPrefillSize,
      maxPrefillTokens: options.maxPrefillTokens,
      maxRunningRequests: options.maxRunningRequests,
      disableRadixCache: options.disableRadixCache,
      schedulePolicy: options.schedulePolicy,
      device: options.device,
      memFractionStatic: options.memFractionStatic,
      cudaGraphMaxBs: options.cudaGraphMaxBs,
      disableCudaGraph: options.disableCudaGraph,
      disableOverlapSchedule: options.disableOverlapSchedule,
      isEmbedding: options.isEmbedding,
      pruneLastLayer: options.pruneLastLayer,
      dtype: options.dtype,
      ...(options.randomSeed !== undefined ? { randomSeed: options.randomSeed } : {}),
      ...(options.expertDistributionRecorderMode !== null
        ? { expertDistributionRecorderMode: options.expertDistributionRecorderMode, expertDistributionRecorderBufferSize: options.expertDistributionRecorderBufferSize }
        : {}),
      onStep: (out) => {
        if (engine) engine.onStep(out);
        else pending.push(out);
      },
    });
    const sized = native.info();
    options.numPages = sized.numPages; // from GPU memory when it was 0
    options.maxTotalTokens = sized.numPages * sized.pageSize;
    engine = new ServingEngine(native, tokenizer, options);
    for (const out of pending) engine.onStep(out);
    return engine;
  }

  /**
   * Starts a request. Throws EngineRequestError / SamplingParamsError (synchronously) for an invalid one.
   * The returned stream yields chunks until every sample has finished; leaving it early aborts the request.
   */
  generate(req: GenerateRequest): GenerateStream {
    if (this.closing) throw new Error('the engine is closed');
    if (this.failure !== null) throw new Error(`the engine failed: ${this.failure}`);
    if (!this.info.isGeneration) throw new EngineRequestError(NOT_GENERATION_MESSAGE);
    const { promptIds, params } = this.validate(req);
    const returnLogprob = req.returnLogprob ?? false;
    const topLogprobsNum = req.topLogprobsNum ?? 0;
    const tokenIdsLogprob = req.tokenIdsLogprob ?? null;
    let logprobStartLen = req.logprobStartLen ?? -1;
    if (!returnLogprob || logprobStartLen >= promptIds.length) logprobStartLen = -1;

    const rid = req.rid ?? randomUUID().replace(/-/g, '');
    if (this.groups.has(rid)) throw new EngineRequestError(`Duplicate request ID: ${rid}`);
    const n = params.n;
    const sampleRids = n === 1 ? [rid] : Array.from({ length: n }, () => randomUUID().replace(/-/g, ''));

    // SGLang's scheduler clamps max_new_tokens to what the context and the KV pool leave (max_req_len);
    // null means "up to that limit".
    const room = Math.min(this.info.contextLength, this.options.numPages * this.options.pageSize) - promptIds.length;
    const maxNewTokens = params.maxNewTokens === null ? room : Math.min(params.maxNewTokens, room);

    const template: NativeRequest = {
      rid: 0,
      inputIds: Int32Array.from(promptIds),
      maxNewTokens,
      minNewTokens: params.minNewTokens,
      temperature: params.temperature,
      topP: params.topP,
      topK: params.topK,
      minP: params.minP,
      frequencyPenalty: params.frequencyPenalty,
      presencePenalty: params.presencePenalty,
      repetitionPenalty: params.repetitionPenalty,
      ignoreEos: params.ignoreEos,
      stopTokenIds: Int32Array.from(params.stopTokenIds),
      seed: params.samplingSeed,
      returnLogprob,
      topLogprobsNum: returnLogprob ? topLogprobsNum : 0,
      tokenIdsLogprob: returnLogprob && tokenIdsLogprob !== null ? Int32Array.from(tokenIdsLogprob) : null,
      logprobStartLen,
    };
    if (params.logitBias !== null && params.logitBias.size > 0) {
      template.logitBiasIds = Int32Array.from(params.logitBias.keys());
      template.logitBiasValues = Float32Array.from(params.logitBias.values());
    }

    const stopMatcher = params.stop.length > 0 ? new StopMatcher(params.stop) : null;
    const cfg: SampleConfig = {
      promptIds,
      stream: req.stream ?? true,
      noStopTrim: params.noStopTrim,
      stopMatcher: stopMatcher !== null && !stopMatcher.empty ? stopMatcher : null,
      skipSpecialTokens: params.skipSpecialTokens,
      spacesBetweenSpecialTokens: params.spacesBetweenSpecialTokens,
      returnLogprob,
      returnTextInLogprobs: req.returnTextInLogprobs ?? false,
      topLogprobsNum: returnLogprob ? topLogprobsNum : 0,
      tokenIdsLogprob: returnLogprob ? tokenIdsLogprob : null,
    };

    let group!: RequestGroup;
    const stream = new GenerateStream(rid, n, promptIds.length, () => this.cancelGroup(group));
    const sharePrefix = n > 1 && !this.options.disableRadixCache && maxNewTokens > 0;
    group = new RequestGroup(rid, stream, sharePrefix ? template : null, sampleRids);
    for (const r of new Set([rid, ...sampleRids])) this.groups.set(r, group);

    // Samples exist from the start (abort and cancel work on them in every stage); they are submitted now,
    // or once the prefill-only request has cached the prompt.
    for (let i = 0; i < n; i++) {
      const s = new SampleState(sampleRids[i] as string, this.nextNumRid++, i, cfg, stream, this.host, this.tokenizer);
      s.owner = group;
      group.samples.push(s);
    }
    group.unfinished = n;
    try {
      this.start(group, template, sharePrefix);
    } catch (err) {
      // A malformed native request (TypeError naming the field) or a closed engine: undo the registration.
      for (const s of group.samples) {
        if (this.live.delete(s.numRid)) this.native.abort(s.numRid); // submitted before the failing one
      }
      if (group.prefillRid >= 0) this.prefills.delete(group.prefillRid);
      for (const r of new Set([rid, ...sampleRids])) this.groups.delete(r);
      throw err;
    }
    return stream;
  }

  private start(group: RequestGroup, template: NativeRequest, sharePrefix: boolean): void {
    if (sharePrefix) {
      const prefill: NativeRequest = {
        ...template,
        rid: this.nextNumRid++,
        maxNewTokens: 0,
        returnLogprob: false,
        topLogprobsNum: 0,
        tokenIdsLogprob: null,
        logprobStartLen: -1,
      };
      group.prefillRid = prefill.rid;
      this.prefills.set(prefill.rid, group);
      this.loopSpin?.touch();
      this.native.submit(prefill);
    } else {
      this.submitSamples(group, template);
    }
  }

  /**
   * One pooled request (embedding / reward / cross-encoder models): its embedding (unit length) or the
   * classifier's outputs. Throws EngineRequestError synchronously for an invalid input or a generation
   * model; the promise rejects with PooledRequestError if the request ends without a result.
   */
  encode(req: EncodeRequest): Promise<PooledResult> {
    if (this.closing) throw new Error('the engine is closed');
    if (this.failure !== null) throw new Error(`the engine failed: ${this.failure}`);
    if (this.info.isGeneration) throw new EngineRequestError(NOT_EMBEDDING_MESSAGE);
    let promptIds: number[];
    if (req.textPair !== undefined) {
      if (req.text !== undefined || req.inputIds !== undefined) throw new EngineRequestError('Only one of text, input_ids or a text pair can be provided.');
      promptIds = this.tokenizer.encodePair(req.textPair[0], req.textPair[1]);
      this.checkPromptLength(promptIds.length);
    } else {
      promptIds = this.promptIds(req);
      // A text that is already chat-templated starts with the BOS token, and the tokenizer adds another:
      // SGLang then runs the reward model on two BOS tokens; one is what the model was trained on.
      const bos = this.info.bosTokenId;
      if (req.text !== undefined && bos >= 0 && promptIds.length > 1 && promptIds[0] === bos && promptIds[1] === bos) promptIds.shift();
    }
    this.checkPoolFits(promptIds.length);
    const rid = req.rid ?? randomUUID().replace(/-/g, '');
    const numRid = this.nextNumRid++;
    const done = this.pooled.add(numRid, rid);
    this.loopSpin?.touch();
    try {
      this.native.submit({
        rid: numRid, inputIds: Int32Array.from(promptIds), maxNewTokens: 0, minNewTokens: 0, temperature: 1, topP: 1, topK: -1,
        minP: 0, frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, ignoreEos: false, stopTokenIds: new Int32Array(0),
        seed: null, returnLogprob: false, topLogprobsNum: 0, tokenIdsLogprob: null, logprobStartLen: -1, pooled: true,
      });
    } catch (err) {
      this.pooled.drop(numRid);
      throw err;
    }
    return done;
  }

  /** Runs a request to the end; returns each sample's final chunk, by index. */
  async generateAll(req: GenerateRequest): Promise<GenerateChunk[]> {
    const finals: GenerateChunk[] = [];
    for await (const chunk of this.generate({ ...req, stream: false })) finals[chunk.index] = chunk;
    return finals;
  }

  /**
   * Aborts a request by its rid (or one sample by its own rid). Its samples end with
   * {type: 'abort', message: 'Aborted'} once the native engine has stopped them. Unknown rids are ignored.
   */
  abort(rid: string): void {
    const group = this.groups.get(rid);
    if (group === undefined || group.done) return;
    if (group.prefillRid >= 0) {
      group.abortRequested = true;
      this.native.abort(group.prefillRid); // the samples end when its abort event (or its finish) arrives
      return;
    }
    for (const s of group.samples) {
      if (!s.finished && (rid === group.rid || rid === s.rid)) {
        s.abortRequested = true;
        this.native.abort(s.numRid);
      }
    }
  }

  /** Aborts every request (SGLang's abort_all). */
  abortAll(): void {
    for (const group of new Set(this.groups.values())) this.abort(group.rid);
  }

  /**
   * Loads new weights of the same architecture from a model directory without a restart (SGLang's
   * update_weights_from_disk): the engine stops admitting, lets running requests finish, swaps the weights
   * and empties the radix cache; queued requests wait and then run on the new weights. On failure the old
   * weights stay and `message` is the loader's error.
   */
  async updateWeights(modelPath: string): Promise<{ success: boolean; message: string }> {
    if (this.closing) throw new Error('the engine is closed');
    const r = await this.native.updateWeights(modelPath);
    if (r.success) this.info = this.native.info();
    return r;
  }

  /** Empties the radix cache; false (nothing done) while requests wait or run. */
  flushCache(): Promise<boolean> {
    return this.native.flushCache();
  }

  /**
   * The expert distribution recorder (--expert-distribution-recorder-mode): 'start' clears the record and
   * records, 'stop' stops recording and keeps the record. Throws (synchronously) the addon's "expert
   * distribution recording is off: ..." Error when the engine was created without a recorder mode.
   */
  expertRecord(op: 'start' | 'stop'): Promise<null> {
    if (this.closing) throw new Error('the engine is closed');
    return this.native.expertRecord(op);
  }

  /**
   * The record, then cleared, as SGLang's dump_record does (dump, then _reset: the recording state stays):
   * one native command, so that no step runs between the dump and the clearing.
   */
  expertRecordDump(): Promise<NativeExpertRecord> {
    if (this.closing) throw new Error('the engine is closed');
    return this.native.expertRecord('dump_reset');
  }

  stats(): ServingEngineStats {
    return {
      ...this.native.stats(),
      activeRequests: new Set(this.groups.values()).size,
      liveNativeRequests: this.live.size + this.prefills.size + this.pooled.size,
    };
  }

  /** Aborts everything (streams end with an abort), stops the engine thread and frees the model. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.native.close();
    this.closed = true;
    // Anything the native engine did not report on is ended here, so that every stream ends.
    for (const group of new Set(this.groups.values())) this.abortGroup(group, SHUTDOWN_MESSAGE, 503);
    this.pooled.failAll(SHUTDOWN_MESSAGE, 503);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- validation ----------------------------------------------------------------------------------

  /** The prompt of a request as token ids (text tokenized), with SGLang's checks of ids and length. */
  private promptIds(req: { text?: string | null; inputIds?: readonly number[] | null }): number[] {
    const hasText = req.text !== undefined && req.text !== null;
    const hasIds = req.inputIds !== undefined && req.inputIds !== null;
    if (!hasText && !hasIds) throw new EngineRequestError('Either text or input_ids should be provided.');
    if (hasText && hasIds) throw new EngineRequestError('Only one of text or input_ids can be provided.');
    let promptIds: number[];
    if (hasText) {
      if (typeof req.text !== 'string') throw new EngineRequestError('text must be a string.');
      promptIds = this.tokenizer.encode(req.text);
    } else {
      const ids = req.inputIds as readonly unknown[];
      if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x))) throw new EngineRequestError('input_ids must be a list of integers.');
      promptIds = ids as number[];
      if (promptIds.some((id) => id >= this.info.vocabSize)) {
        throw new EngineRequestError(`The input_ids ${pyList(promptIds)} contains values greater than the vocab size (${this.info.vocabSize}).`);
      }
      if (promptIds.some((id) => id < 0)) throw new EngineRequestError(`The input_ids ${pyList(promptIds)} contains negative values.`);
      promptIds = promptIds.slice();
    }
    this.checkPromptLength(promptIds.length);
    return promptIds;
  }

  private checkPromptLength(len: number): void {
    if (len === 0) throw new EngineRequestError('The input is empty (0 tokens).');
    // An XLM-R style encoder numbers positions from pad_token_id + 1: max_position_embeddings - pad_token_id - 1
    // tokens fit (512 for bge-reranker-v2-m3's 514).
    const info = this.info;
    const ctx = info.poolingKind === 'rerank' && info.padTokenId >= 0 ? info.contextLength - info.padTokenId : info.contextLength;
    if (len >= ctx) throw new EngineRequestError(`The input (${len} tokens) is longer than the model's context length (${ctx} tokens).`);
  }

  /** The KV pool must hold the prompt (SGLang: max_req_input_len = max_total_num_tokens - 1). */
  private checkPoolFits(len: number): void {
    const poolTokens = this.options.numPages * this.options.pageSize;
    if (len >= poolTokens) {
      throw new EngineRequestError(`The input (${len} tokens) is longer than the KV cache can hold (${poolTokens} tokens, --max-total-tokens).`);
    }
  }

  private validate(req: GenerateRequest): { promptIds: number[]; params: SamplingParams } {
    if (req.text === undefined || req.text === null) {
      if (req.inputIds === undefined || req.inputIds === null) throw new EngineRequestError('Either text or input_ids should be provided.');
    } else if (req.inputIds !== undefined && req.inputIds !== null) {
      throw new EngineRequestError('Only one of text or input_ids can be provided.');
    }
    if (req.rid !== undefined && typeof req.rid !== 'string') throw new EngineRequestError('rid must be a string.');

    const params = normalizeSamplingParams(req.samplingParams, this.info.vocabSize, this.samplingDefaults);
    const unsupported = (
      [
        ['json_schema', params.jsonSchema],
        ['regex', params.regex],
        ['ebnf', params.ebnf],
        ['structural_tag', params.structuralTag],
      ] as const
    ).find(([, v]) => v !== null);
    if (unsupported) throw new SamplingParamsError(`${unsupported[0]} is not supported by this server (constrained decoding is not implemented).`);
    if (params.stopRegex.length > 0) throw new SamplingParamsError('stop_regex is not supported by this server.');
    for (const id of params.stopTokenIds) {
      if (!(id >= 0 && id < this.info.vocabSize)) throw new SamplingParamsError(`stop_token_ids must be in [0, ${this.info.vocabSize - 1}], got ${id}.`);
    }
    if (params.samplingSeed !== null && !Number.isSafeInteger(params.samplingSeed)) {
      throw new SamplingParamsError(`sampling_seed must be an integer, got ${params.samplingSeed}.`);
    }

    const promptIds = this.promptIds(req);
    const len = promptIds.length;
    const ctx = this.info.contextLength;
    // SGLang checks the total only when the client gave max_new_tokens (the default 128 is clamped instead).
    const raw = (req.samplingParams ?? {}) as Record<string, unknown>;
    const given = raw.max_new_tokens;
    if (typeof given === 'number' && given + len >= ctx) {
      throw new EngineRequestError(
        `Requested token count exceeds the model's maximum context length of ${ctx} tokens. You requested a total of ${given + len} ` +
          `tokens: ${len} tokens from the input messages and ${given} tokens for the completion. Please reduce the number ` +
          `of tokens in the input messages or the completion to fit within the limit.`,
      );
    }
    this.checkPoolFits(len);

    if (req.returnLogprob !== undefined && typeof req.returnLogprob !== 'boolean') throw new EngineRequestError('return_logprob must be a boolean.');
    const lsl = req.logprobStartLen ?? -1;
    if (!Number.isInteger(lsl) || lsl < -1) throw new EngineRequestError(`logprob_start_len must be -1 or a non-negative integer, got ${lsl}.`);
    if (req.returnLogprob && lsl > len) {
      throw new EngineRequestError(
        `req.logprob_start_len=${lsl} is higher than the number of input tokens len(req.origin_input_ids)=${len}. Please use a smaller logprob_start_len.`,
      );
    }
    const tln = req.topLogprobsNum ?? 0;
    if (!Number.isInteger(tln) || tln < 0) throw new EngineRequestError(`top_logprobs_num must be a non-negative integer, got ${tln}.`);
    if (tln > this.info.vocabSize) throw new EngineRequestError(`top_logprobs_num must be at most the vocab size (${this.info.vocabSize}), got ${tln}.`);
    const tids = req.tokenIdsLogprob;
    if (tids !== undefined && tids !== null) {
      if (!Array.isArray(tids) || !tids.every((x) => Number.isInteger(x))) throw new EngineRequestError('token_ids_logprob must be a list of integers.');
      const bad = tids.find((id) => id < 0 || id >= this.info.vocabSize);
      if (bad !== undefined) throw new EngineRequestError(`token_ids_logprob must be in [0, ${this.info.vocabSize - 1}], got ${bad}.`);
    }
    return { promptIds, params };
  }

  // ---- native events -------------------------------------------------------------------------------

  private submitSamples(group: RequestGroup, template: NativeRequest): void {
    this.loopSpin?.touch();
    for (const s of group.samples) {
      if (s.finished) continue;
      this.live.set(s.numRid, s);
      this.native.submit({ ...template, rid: s.numRid });
    }
  }

  /** The hot path: one pass over the step's events. */
  private onStep(out: NativeStepOutput): void {
    const t0 = performance.now();
    this.loopSpin?.touch();
    const step = ++this.stepNo;
    const touched = this.touched;
    const n = out.n;
    for (let i = 0; i < n; i++) {
      const rid = out.rid[i] as number;
      const s = this.live.get(rid);
      if (s === undefined) {
        if (this.pooled.onEvent(out, i, this.pooledAbortReason)) continue;
        const group = this.prefills.get(rid);
        if (group !== undefined && (out.finish[i] as number) !== FINISH_NONE) this.onPrefillDone(group, out.finish[i] as number);
        continue;
      }
      if ((out.finish[i] as number) !== FINISH_NONE) this.live.delete(rid);
      let fresh: boolean;
      try {
        fresh = s.applyEvent(out, i);
      } catch (err) {
        // A bug here must not take the engine thread's callback down: end this request with the error.
        this.native.abort(rid);
        s.abort(`internal error in the engine front: ${(err as Error).message}`, 500, 'InternalServerError');
        fresh = true;
      }
      if (fresh && s.stamp !== step) {
        s.stamp = step;
        touched.push(s);
      }
    }
    for (let k = 0; k < touched.length; k++) (touched[k] as SampleState).emit();
    touched.length = 0;
    if (out.error !== undefined) this.failAll(out.error);
    const callbackUs = (performance.now() - t0) * 1000;
    const cs = this.callbackStats;
    cs.steps++;
    cs.events += n;
    cs.totalCallbackUs += callbackUs;
    const hook = this.options.onStepTiming;
    if (hook !== undefined) {
      hook({
        scheduleUs: out.scheduleUs,
        forwardUs: out.forwardUs,
        sampleUs: out.sampleUs,
        callbackUs,
        batchSize: out.batchSize,
        numTokens: out.numTokens,
        prevLoopUs: out.prevLoopUs,
        events: n,
      });
    }
  }

  private readonly pooledAbortReason = (): { message: string; statusCode: number } =>
    this.closing ? { message: SHUTDOWN_MESSAGE, statusCode: 503 } : { message: NOT_SCHEDULABLE_MESSAGE, statusCode: 400 };

  /** n > 1: the prompt is cached (or the prefill-only request was aborted). */
  private onPrefillDone(group: RequestGroup, finish: number): void {
    this.prefills.delete(group.prefillRid);
    group.prefillRid = -1;
    if (group.done) return;
    if (this.closing) return this.abortGroup(group, SHUTDOWN_MESSAGE, 503);
    if (finish === FINISH_ABORT || group.abortRequested) {
      return this.abortGroup(group, group.abortRequested ? ABORT_MESSAGE : NOT_SCHEDULABLE_MESSAGE, group.abortRequested ? null : 400);
    }
    try {
      this.submitSamples(group, group.native as NativeRequest);
    } catch (err) {
      for (const s of group.samples) if (this.live.get(s.numRid) === s) this.native.abort(s.numRid);
      this.abortGroup(group, `failed to submit the samples: ${(err as Error).message}`, 500);
    }
  }

  private abortGroup(group: RequestGroup, message: string, statusCode: number | null): void {
    for (const s of group.samples) s.abort(message, statusCode);
    this.flushGroup(group);
  }

  private onSampleFinished(s: SampleState): void {
    this.live.delete(s.numRid);
    const group = s.owner as RequestGroup;
    if (--group.unfinished === 0) {
      group.done = true;
      for (const r of new Set([group.rid, ...group.sampleRids])) if (this.groups.get(r) === group) this.groups.delete(r);
      // The stream ends after the final chunks of this step are pushed.
      queueMicrotask(() => group.stream.end());
    }
  }

  /** Pushes the final chunks of samples ended outside a step. */
  private flushGroup(group: RequestGroup): void {
    for (const s of group.samples) s.emit();
  }

  private cancelGroup(group: RequestGroup): void {
    if (group.done) return;
    if (group.prefillRid >= 0) {
      this.native.abort(group.prefillRid);
      this.prefills.delete(group.prefillRid);
      group.prefillRid = -1;
    }
    for (const s of group.samples) {
      if (s.finished) continue;
      if (this.live.has(s.numRid)) this.native.abort(s.numRid);
      s.drop();
    }
  }

  /** A fatal native error: every live request was aborted natively; end them with the error. */
  private failAll(message: string): void {
    this.failure = message;
    for (const group of new Set(this.groups.values())) {
      if (group.prefillRid >= 0) {
        this.prefills.delete(group.prefillRid);
        group.prefillRid = -1;
      }
      for (const s of group.samples) s.abort(message, 500, 'InternalServerError');
      this.flushGroup(group);
    }
    this.live.clear();
    this.prefills.clear();
    this.pooled.failAll(message, 500);
  }

  private tokenText(id: number): string {
    let t = this.tokenTexts.get(id);
    if (t === undefined) {
      t = this.tokenizer.decode([id], { skipSpecialTokens: false });
      this.tokenTexts.set(id, t);
    }
    return t;
  }
}

/** SGLang's default sampling params from generation_config.json (ModelConfig.get_default_sampling_params). */
export function defaultsFromGenerationConfig(json: string | null): SamplingDefaults {
  if (json === null) return {};
  let cfg: unknown;
  try {
    cfg = JSON.parse(json);
  } catch {
    return {};
  }
  if (typeof cfg !== 'object' || cfg === null) return {};
  const out: SamplingDefaults = {};
  for (const key of ['temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty'] as const) {
    const v = (cfg as Record<string, unknown>)[key];
    if (typeof v === 'number') out[key] = v;
  }
  return out;
}
