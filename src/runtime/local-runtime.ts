// LocalRuntime: the RuntimeService over the in-process ServingEngine. The HTTP gateway and the gRPC server
// call it; its answers are SGLang's JSON shapes (../shared/CONTRACT.md).
//
// SGLang sources mirrored (sgl-project/sglang, python/sglang/srt/):
//  - managers/io_struct.py GenerateReqInput.normalize_batch_and_arguments (see generate-request.ts);
//  - managers/tokenizer_manager.py: _handle_batch_request (output i * n + j = input i, sample j),
//    _wait_one_response (an abort finish with status 400 is a ValueError → 400 {"error": ...}; 500 / 503 are
//    HTTP errors; a client abort ends with finish_reason abort and status 200), the meta_info keys, abort_request
//    (an unknown rid is ignored), flush_cache;
//  - managers/tokenizer_manager_score_mixin.py score_request (prompt = query + item as text or ids, item + query
//    with item_first; scores from the next-token logprobs of label_token_ids; exp, or softmax over the labels);
//  - entrypoints/openai/serving_tokenize.py (tokenize / detokenize), serving_score.py, http_server.py
//    (get_model_info, get_server_info, health_generate, get_load, v1/models).
import { resolveModelPath } from '../engine/model-path.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import { EngineRequestError, SamplingParamsError, type GenerateChunk, type GenerateStream, type ServingEngine } from '../engine/engine.js';
import { projectRoot } from '../native/addon.js';
import { normalizeGenerateRequest, type NormalizedGenerate, type NormalizedInput } from './generate-request.js';
import * as pooled from './pooled-endpoints.js';
import { RuntimeMetrics, type EngineLoad } from './metrics.js';
import { isInt, pyRepr, pyTypeName } from './py-format.js';
import { EXPERT_DISTRIBUTION_MESSAGES, expertDistributionDir, expertRecordFromNative, writeExpertDistributionFiles } from './expert-distribution.js';
import {
  RuntimeError,
  type AbortReq,
  type DetokenizeReq,
  type DetokenizeResp,
  type EmbeddingsReq,
  type EmbeddingsResp,
  type EncodeOutput,
  type EncodeReq,
  type ExpertDistributionOp,
  type ExpertDistributionRecordResp,
  type GenerateItem,
  type GenerateOutput,
  type GenerateReqInput,
  type GenerateShape,
  type MetaInfo,
  type RerankItem,
  type RerankReq,
  type RuntimeService,
  type ScoreReq,
  type ScoreResp,
  type TokenizeReq,
  type TokenizeResp,
  type UpdateWeightsReq,
  type UpdateWeightsResp,
} from './runtime-service.js';

export interface LocalRuntimeInfo {
  /** --model-path as the user gave it (echoed by /get_model_info and /server_info). */
  modelPath: string;
  /** --tokenizer-path as given (default: the model path). */
  tokenizerPath: string;
  /** --served-model-name (default: the model path). */
  servedModelName: string;
  /** The flat server arguments of /server_info (see buildServerArgs). */
  serverArgs: Record<string, unknown>;
  /** --weight-version (SGLang's default "default"). */
  weightVersion?: string;
  /** --preferred-sampling-params, echoed by /get_model_info (null when not given). */
  preferredSamplingParams?: Record<string, unknown> | null;
  /**
   * --enable-metrics: non-streaming requests are streamed inside the runtime too, so that time to first token
   * and inter-token latency are observed for them (default false).
   */
  enableMetrics?: boolean;
}

/** The package version (SGLang's /server_info "version"). */
export const PACKAGE_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

const GB = 1 << 30;
const round2 = (x: number): number => Math.round(x * 100) / 100;

export interface ServerArgsOptions {
  modelPath: string;
  tokenizerPath?: string;
  servedModelName?: string;
  host?: string;
  port?: number;
  grpcPort?: number | null;
  apiKey?: string | null;
  logLevel?: string;
  enableMetrics?: boolean;
  weightVersion?: string;
  preferredSamplingParams?: Record<string, unknown> | null;
}

/**
 * SGLang's flat server arguments (server_args.py ServerArgs, the keys this server has) from the engine's
 * resolved options. An api key is reported as "<redacted>" (SGLang prints it in clear).
 */
export function buildServerArgs(engine: ServingEngine, o: ServerArgsOptions): Record<string, unknown> {
  const opt = engine.options;
  return {
    model_path: o.modelPath,
    tokenizer_path: o.tokenizerPath ?? o.modelPath,
    tokenizer_mode: 'auto',
    skip_tokenizer_init: false,
    load_format: 'auto',
    trust_remote_code: false,
    context_length: null,
    is_embedding: !engine.info.isGeneration,
    revision: null,
    host: o.host ?? '127.0.0.1',
    port: o.port ?? 30000,
    grpc_port: o.grpcPort ?? null,
    dtype: engine.info.backend === 'cuda' ? engine.info.activationDtype : engine.info.dtype, // the dtype that runs
    device: engine.info.backend,
    served_model_name: o.servedModelName ?? o.modelPath,
    weight_version: o.weightVersion ?? 'default',
    preferred_sampling_params: o.preferredSamplingParams ?? null,
    page_size: opt.pageSize,
    max_total_tokens: opt.numPages * opt.pageSize,
    chunked_prefill_size: opt.chunkedPrefillSize,
    max_prefill_tokens: opt.maxPrefillTokens,
    max_running_requests: opt.maxRunningRequests,
    schedule_policy: opt.schedulePolicy,
    disable_radix_cache: opt.disableRadixCache,
    radix_eviction_policy: 'lru',
    random_seed: opt.randomSeed ?? null,
    tp_size: 1,
    dp_size: 1,
    stream_output: false,
    log_level: o.logLevel ?? 'info',
    api_key: o.apiKey ? '<redacted>' : null,
    enable_metrics: o.enableMetrics ?? false,
    expert_distribution_recorder_mode: opt.expertDistributionRecorderMode,
    expert_distribution_recorder_buffer_size: opt.expertDistributionRecorderBufferSize,
  };
}

/** Engine validation errors are SGLang's ValueErrors (400, {"error": {"message"}}). */
function requestError(err: unknown, format: 'error' | 'openai' = 'error'): unknown {
  if (err instanceof SamplingParamsError || err instanceof EngineRequestError) return new RuntimeError(400, err.message, format);
  if (err instanceof Error && /the engine is closed|the engine failed/.test(err.message)) return new RuntimeError(503, err.message, format);
  return err;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class LocalRuntime implements RuntimeService {
  readonly metricsRegistry: RuntimeMetrics;
  private weightVersion: string;
  private closed = false;

  constructor(
    readonly engine: ServingEngine,
    readonly info: LocalRuntimeInfo,
  ) {
    this.weightVersion = info.weightVersion ?? 'default';
    this.metricsRegistry = new RuntimeMetrics(info.servedModelName, () => this.load());
  }

  // ---- /generate -----------------------------------------------------------------------------------

  async generate(req: GenerateReqInput, signal?: AbortSignal): Promise<{ shape: GenerateShape; items: AsyncIterable<GenerateItem> }> {
    if (this.closed) throw new RuntimeError(503, 'The server is shutting down.');
    const arrival = performance.now();
    const norm = normalizeGenerateRequest(req);
    // Internally streamed when the client streams, or to observe TTFT / ITL for the metrics.
    const stream = norm.stream || this.info.enableMetrics === true;
    const streams: GenerateStream[] = [];
    try {
      for (const input of norm.inputs) {
        streams.push(
          this.engine.generate({
            ...(input.text !== undefined ? { text: input.text } : { inputIds: input.inputIds }),
            samplingParams: input.samplingParams,
            returnLogprob: input.returnLogprob,
            logprobStartLen: input.logprobStartLen,
            topLogprobsNum: input.topLogprobsNum,
            tokenIdsLogprob: input.tokenIdsLogprob,
            returnTextInLogprobs: norm.returnTextInLogprobs,
            ...(input.rid !== undefined ? { rid: input.rid } : {}),
            stream,
          }),
        );
      }
    } catch (err) {
      for (const s of streams) s.cancel();
      throw requestError(err);
    }
    const shape: GenerateShape = { batch: norm.batch, count: norm.inputs.length * norm.n };
    return { shape, items: this.merge(streams, norm, arrival, signal) };
  }

  /** Interleaves the inputs' streams into GenerateItems (index i * n + j); leaving early cancels them all. */
  private async *merge(streams: GenerateStream[], norm: NormalizedGenerate, arrival: number, signal?: AbortSignal): AsyncGenerator<GenerateItem> {
    const n = norm.n;
    type Next = { i: number; r: IteratorResult<GenerateChunk> };
    const pending = new Map<number, Promise<Next>>();
    const arm = (i: number) => pending.set(i, (streams[i] as GenerateStream).next().then((r) => ({ i, r })));
    streams.forEach((_, i) => arm(i));
    const cancelAll = () => {
      for (const s of streams) s.cancel();
    };
    signal?.addEventListener('abort', cancelAll, { once: true });
    if (signal?.aborted) cancelAll();
    const last = new Map<number, number>(); // output index -> time of its previous tokens
    const metrics = this.metricsRegistry;
    try {
      while (pending.size > 0) {
        const { i, r } = await Promise.race(pending.values());
        if (r.done) {
          pending.delete(i);
          continue;
        }
        arm(i);
        const chunk = r.value;
        const index = i * n + chunk.index;
        const now = performance.now();
        if (chunk.newIds.length > 0) {
          const prev = last.get(index);
          if (prev === undefined) metrics.firstToken((now - arrival) / 1000);
          else if (norm.stream || this.info.enableMetrics) metrics.interToken((now - prev) / 1000, chunk.newIds.length);
          last.set(index, now);
          metrics.generated(chunk.newIds.length);
        }
        const final = chunk.finishReason !== null;
        if (final) {
          metrics.finished(chunk.promptTokens, chunk.completionTokens, chunk.cachedTokens, (now - arrival) / 1000);
          const fr = chunk.finishReason;
          if (fr !== null && fr.type === 'abort' && fr.status_code !== null) {
            // tokenizer_manager._wait_one_response: 400 is a ValueError, 500 / 503 an HTTPException.
            throw new RuntimeError(fr.status_code, fr.message, fr.status_code === 400 ? 'error' : 'openai');
          }
        } else if (!norm.stream) {
          continue;
        }
        const output = this.toOutput(chunk, norm.inputs[i] as NormalizedInput, arrival, now);
        if (norm.batch && norm.stream) output.index = index;
        yield { index, output, final };
      }
    } finally {
      signal?.removeEventListener('abort', cancelAll);
      cancelAll(); // no-op for streams that ended
    }
  }

  private toOutput(chunk: GenerateChunk, input: NormalizedInput, arrival: number, now: number): GenerateOutput {
    const meta: MetaInfo = {
      id: chunk.rid,
      finish_reason: chunk.finishReason,
      prompt_tokens: chunk.promptTokens,
      weight_version: this.weightVersion,
      reasoning_tokens: 0,
      completion_tokens: chunk.completionTokens,
      cached_tokens: chunk.cachedTokens,
      cached_tokens_details: null,
      dp_rank: null,
      e2e_latency: (now - arrival) / 1000,
    };
    if (input.returnLogprob) {
      meta.input_token_logprobs = chunk.inputTokenLogprobs ?? [];
      meta.output_token_logprobs = chunk.outputTokenLogprobs ?? [];
      if (input.topLogprobsNum > 0) {
        meta.input_top_logprobs = chunk.inputTopLogprobs ?? [];
        meta.output_top_logprobs = chunk.outputTopLogprobs ?? [];
      }
      if (input.tokenIdsLogprob !== null) {
        meta.input_token_ids_logprobs = chunk.inputTokenIdsLogprobs ?? [];
        meta.output_token_ids_logprobs = chunk.outputTokenIdsLogprobs ?? [];
      }
    }
    meta.response_sent_to_client_ts = Date.now() / 1000;
    return { text: chunk.text, output_ids: chunk.outputIds, meta_info: meta };
  }

  // ---- info ----------------------------------------------------------------------------------------

  async modelInfo(): Promise<Record<string, unknown>> {
    const mi = this.engine.info;
    return {
      model_path: this.info.modelPath,
      tokenizer_path: this.info.tokenizerPath,
      is_generation: this.engine.info.isGeneration,
      preferred_sampling_params: this.info.preferredSamplingParams ?? null,
      weight_version: this.weightVersion,
      has_image_understanding: false,
      has_audio_understanding: false,
      model_type: mi.modelType,
      architectures: mi.architectures,
    };
  }

  async serverInfo(): Promise<Record<string, unknown>> {
    const opt = this.engine.options;
    const mi = this.engine.info;
    const maxTotal = opt.numPages * opt.pageSize;
    const args = { ...this.info.serverArgs, weight_version: this.weightVersion };
    return {
      ...args,
      status: 'ready',
      max_total_num_tokens: maxTotal,
      max_req_input_len: Math.min(mi.contextLength, maxTotal) - 1,
      internal_states: [
        {
          ...args,
          last_gen_throughput: round2(this.metricsRegistry.genThroughput()),
          memory_usage: {
            weight: round2(mi.weightBytes / GB),
            kvcache: round2(mi.kvBytes / GB),
            token_capacity: maxTotal,
            graph: 0,
          },
        },
      ],
      version: PACKAGE_VERSION,
    };
  }

  async ready(): Promise<boolean> {
    return !this.closed && !this.engine.isClosed;
  }

  /** http_server.health_generate: one greedy token from input_ids [0] (an embedding of [0] on a pooled model). */
  async healthGenerate(timeoutMs: number): Promise<boolean> {
    if (this.closed) return false;
    if (!this.engine.info.isGeneration) return this.healthEncode(timeoutMs);
    let stream: GenerateStream;
    try {
      stream = this.engine.generate({
        inputIds: [0],
        samplingParams: { max_new_tokens: 1, temperature: 0 },
        rid: `HEALTH_CHECK_${Date.now() / 1000}`,
        stream: false,
      });
    } catch {
      return false;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const run = (async () => {
      for await (const c of stream) if (c.finishReason !== null) return c.finishReason.type !== 'abort';
      return false;
    })().catch(() => false);
    try {
      return await Promise.race([run, timeout]);
    } finally {
      clearTimeout(timer);
      stream.cancel();
    }
  }

  private async healthEncode(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      const run = this.engine.encode({ inputIds: [0], rid: `HEALTH_CHECK_${Date.now() / 1000}` }).then(
        () => true,
        () => false,
      );
      return await Promise.race([run, timeout]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- pooled models: /encode, /classify, /v1/embeddings, /v1/rerank (pooled-endpoints.ts) ---------

  private pooledContext(): pooled.PooledContext {
    if (this.closed) throw new RuntimeError(503, 'The server is shutting down.');
    return { engine: this.engine, weightVersion: this.weightVersion, modelPath: this.info.modelPath };
  }

  async encode(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]> {
    return pooled.encode(this.pooledContext(), req);
  }

  async classify(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]> {
    return pooled.encode(this.pooledContext(), req);
  }

  async embeddings(req: EmbeddingsReq): Promise<EmbeddingsResp> {
    return pooled.embeddings(this.pooledContext(), req);
  }

  async rerank(req: RerankReq): Promise<RerankItem[]> {
    return pooled.rerank(this.pooledContext(), req);
  }

  async flushCache(timeoutS: number): Promise<boolean> {
    const deadline = Date.now() + Math.max(0, timeoutS) * 1000;
    for (;;) {
      const s = this.engine.stats();
      if (s.running === 0 && s.waiting === 0 && s.activeRequests === 0) break;
      if (Date.now() >= deadline) break;
      await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
    }
    return this.engine.flushCache();
  }

  /**
   * SGLang's update_weights_from_disk: the engine stops admitting, lets running requests finish (queued ones
   * wait), swaps in the new checkpoint and flushes the radix cache. Messages as SGLang's model_runner words
   * them; on failure the served weights stay.
   */
  async updateWeightsFromDisk(req: UpdateWeightsReq): Promise<UpdateWeightsResp> {
    if (this.closed) throw new RuntimeError(503, 'The server is shutting down.');
    if (req.abort_all_requests === true) this.engine.abortAll();
    let dir: string;
    try {
      dir = resolveModelPath(req.model_path);
    } catch (err) {
      return { success: false, message: `Failed to get weights iterator: ${(err as Error).message}.`, num_paused_requests: 0 };
    }
    const r = await this.engine.updateWeights(dir);
    if (!r.success) {
      return { success: false, message: `Failed to update weights: ${r.message}.\nRolling back to original weights.`, num_paused_requests: 0 };
    }
    if (typeof req.weight_version === 'string') this.weightVersion = req.weight_version;
    return { success: true, message: 'Succeeded to update model weights.', num_paused_requests: 0 };
  }

  // ---- tokenizer -----------------------------------------------------------------------------------

  async tokenize(req: TokenizeReq): Promise<TokenizeResp> {
    if (typeof req !== 'object' || req === null) throw new RuntimeError(400, 'The request body must be a JSON object.', 'openai');
    const addSpecial = req.add_special_tokens ?? true;
    if (typeof addSpecial !== 'boolean') throw new RuntimeError(400, "'add_special_tokens' must be a boolean.", 'openai');
    const tok = this.engine.tokenizer;
    // serving_tokenize: the tokenizer's model_max_length (transformers' "no limit" falls back to the context).
    const maxModelLen = Number.isFinite(tok.modelMaxLength) && tok.modelMaxLength < 1e15 ? tok.modelMaxLength : this.engine.info.contextLength;
    const { prompt } = req;
    if (typeof prompt === 'string') {
      const tokens = tok.encode(prompt, { addSpecialTokens: addSpecial });
      return { tokens, count: tokens.length, max_model_len: maxModelLen };
    }
    if (Array.isArray(prompt) && prompt.every((p) => typeof p === 'string')) {
      const tokens = prompt.map((p) => tok.encode(p, { addSpecialTokens: addSpecial }));
      return { tokens, count: tokens.map((t) => t.length), max_model_len: maxModelLen };
    }
    throw new RuntimeError(400, `Invalid prompt type: ${prompt === undefined ? 'missing' : Array.isArray(prompt) ? 'list' : typeof prompt}. Expected str or List[str].`, 'openai');
  }

  // serving_tokenize.py: List[int] → {"text": str}; List[List[int]] → {"text": [str, ...]}; [] → "".
  async detokenize(req: DetokenizeReq): Promise<DetokenizeResp> {
    const fail = (msg: string) => new RuntimeError(400, msg, 'openai');
    if (typeof req !== 'object' || req === null) throw fail('The request body must be a JSON object.');
    const skip = req.skip_special_tokens ?? true;
    if (typeof skip !== 'boolean') throw fail("'skip_special_tokens' must be a boolean.");
    const tokens: unknown = req.tokens;
    const typeError = () => fail(`Invalid tokens type: ${pyTypeName(tokens)}. Expected List[int] or List[List[int]].`);
    if (!Array.isArray(tokens)) throw typeError();
    if (tokens.length === 0) return { text: '' };
    if (typeof tokens[0] === 'number') {
      if (!tokens.every(isInt)) throw fail("Invalid input: 'tokens' must be a list of integers.");
      return { text: this.decodeChecked(tokens, skip) };
    }
    if (!Array.isArray(tokens[0])) throw typeError();
    const texts: string[] = [];
    for (const sub of tokens) {
      if (!Array.isArray(sub) || !sub.every(isInt)) {
        throw fail(`Invalid input: Sublist in 'tokens' must contain only integers. Found: ${pyRepr(sub)}`);
      }
      texts.push(this.decodeChecked(sub, skip));
    }
    return { text: texts };
  }

  private decodeChecked(tokens: number[], skip: boolean): string {
    const limit = Math.max(this.engine.tokenizer.vocabSize, this.engine.info.vocabSize);
    const bad = tokens.find((t) => t < 0 || t >= limit);
    if (bad !== undefined) {
      throw new RuntimeError(400, `Error decoding tokens: token id ${bad} is out of range. Input tokens might be invalid for the model.`, 'openai');
    }
    return this.engine.tokenizer.decode(tokens, { skipSpecialTokens: skip });
  }

  // ---- /v1/score -----------------------------------------------------------------------------------

  async score(req: ScoreReq): Promise<ScoreResp> {
    const fail = (msg: string) => new RuntimeError(400, msg, 'openai');
    if (typeof req !== 'object' || req === null) throw fail('The request body must be a JSON object.');
    const { query, items, label_token_ids: labels } = req;
    const applySoftmax = req.apply_softmax ?? false;
    const itemFirst = req.item_first ?? false;
    if (typeof applySoftmax !== 'boolean') throw fail("'apply_softmax' must be a boolean.");
    if (typeof itemFirst !== 'boolean') throw fail("'item_first' must be a boolean.");
    const model = typeof req.model === 'string' ? req.model : this.info.servedModelName;
    if (labels === undefined || labels === null) throw fail('label_token_ids must be provided');
    if (!Array.isArray(labels) || !labels.every(isInt)) throw fail("'label_token_ids' must be a list of integers.");
    if (items === undefined || items === null) throw fail('items must be provided');
    if ((typeof items === 'string' && items === '') || (Array.isArray(items) && items.length === 0)) {
      return { scores: [], model, usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, object: 'scoring' };
    }
    const vocab = this.engine.info.vocabSize;
    for (const id of labels) {
      if (id >= vocab || id < 0) throw fail(`Token ID ${id} is out of vocabulary (vocab size: ${vocab})`);
    }

    let prompts: ({ text: string } | { inputIds: number[] })[];
    if (typeof query === 'string' && (typeof items === 'string' || (Array.isArray(items) && items.every((x) => typeof x === 'string')))) {
      const list = typeof items === 'string' ? [items] : (items as string[]);
      prompts = list.map((item) => ({ text: itemFirst ? `${item}${query}` : `${query}${item}` }));
    } else if (isIntListLike(query) && Array.isArray(items) && items.every((x) => isIntListLike(x))) {
      const q = query as number[];
      prompts = (items as number[][]).map((item) => ({ inputIds: itemFirst ? [...item, ...q] : [...q, ...item] }));
    } else {
      throw fail('Invalid combination of query/items types for score_request.');
    }

    // One greedy token per prompt: its token_ids logprobs are the full-vocabulary log-softmax at the last
    // prompt position (SGLang runs max_new_tokens 0 and reads the same row).
    const streams: GenerateStream[] = [];
    try {
      for (const p of prompts) {
        streams.push(
          this.engine.generate({
            ...p,
            samplingParams: { max_new_tokens: 1, temperature: 0 },
            returnLogprob: true,
            tokenIdsLogprob: labels,
            logprobStartLen: -1,
            stream: false,
          }),
        );
      }
    } catch (err) {
      for (const s of streams) s.cancel();
      throw requestError(err, 'openai');
    }
    const finals: GenerateChunk[] = [];
    try {
      await Promise.all(
        streams.map(async (s, i) => {
          for await (const c of s) if (c.finishReason !== null) finals[i] = c;
        }),
      );
    } finally {
      for (const s of streams) s.cancel();
    }
    const scores: number[][] = [];
    let promptTokens = 0;
    finals.forEach((c) => {
      promptTokens += c.promptTokens;
      const row = c.outputTokenIdsLogprobs?.[0];
      if (c.finishReason?.type === 'abort' || row === undefined) {
        throw new RuntimeError(c.finishReason?.type === 'abort' ? (c.finishReason.status_code ?? 500) : 500, c.finishReason?.type === 'abort' ? c.finishReason.message : `output_logprobs is empty for request ${c.rid}.`, 'openai');
      }
      const byId = new Map<number, number>();
      for (const [lp, id] of row) if (lp !== null) byId.set(id, lp);
      const lps = labels.map((id) => byId.get(id) ?? Number.NEGATIVE_INFINITY);
      scores.push(applySoftmax ? softmax(lps) : lps.map((x) => (x === Number.NEGATIVE_INFINITY ? 0 : Math.exp(x))));
    });
    return { scores, model, usage: { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens }, object: 'scoring' };
  }

  // ---- control -------------------------------------------------------------------------------------

  async abortRequest(req: AbortReq): Promise<void> {
    if (typeof req !== 'object' || req === null) throw new RuntimeError(400, 'The request body must be a JSON object.', 'openai');
    if (req.abort_all !== undefined && req.abort_all !== null && typeof req.abort_all !== 'boolean') throw new RuntimeError(400, "'abort_all' must be a boolean.", 'openai');
    if (req.rid !== undefined && req.rid !== null && typeof req.rid !== 'string') throw new RuntimeError(400, "'rid' must be a string.", 'openai');
    if (req.abort_all === true) this.engine.abortAll();
    else if (typeof req.rid === 'string' && req.rid !== '') this.engine.abort(req.rid); // unknown rids are ignored, as SGLang does
  }

  /**
   * SGLang's expert distribution recorder (eplb/expert_distribution.py, see expert-distribution.ts): start
   * clears and records, stop stops, dump writes the record's files, returns it and clears it. Without
   * --expert-distribution-recorder-mode: 400 {"error": {"message": ...}} (SGLang's scheduler raises there).
   */
  async expertDistributionRecord(op: ExpertDistributionOp): Promise<ExpertDistributionRecordResp> {
    if (this.closed) throw new RuntimeError(503, 'The server is shutting down.');
    if (op !== 'start' && op !== 'stop' && op !== 'dump') throw new RuntimeError(400, `Unrecognized expert distribution action: ${String(op)}.`);
    const off = (err: unknown): unknown =>
      err instanceof Error && err.message.startsWith('expert distribution recording is off') ? new RuntimeError(400, err.message, 'error') : requestError(err);
    const message = EXPERT_DISTRIBUTION_MESSAGES[op];
    if (op !== 'dump') {
      try {
        await this.engine.expertRecord(op);
      } catch (err) {
        throw off(err);
      }
      return { message };
    }
    let raw;
    try {
      raw = await this.engine.expertRecordDump();
    } catch (err) {
      throw off(err);
    }
    const record = expertRecordFromNative(raw, this.engine.info.moeLayerIds, this.engine.options.expertDistributionRecorderBufferSize);
    const dir = expertDistributionDir();
    try {
      record.files = await writeExpertDistributionFiles(record, dir);
    } catch (err) {
      throw new RuntimeError(500, `Failed to write the expert distribution record to ${dir}: ${(err as Error).message}`);
    }
    return { message, record };
  }

  /** One DP rank's GetLoadReqOutput (the gateway answers SGLang's list of them). */
  async getLoad(): Promise<Record<string, unknown>> {
    const l = this.load();
    return { dp_rank: 0, num_reqs: l.running + l.waiting, num_waiting_reqs: l.waiting, num_tokens: l.usedTokens };
  }

  async listModels(): Promise<Record<string, unknown>> {
    return {
      object: 'list',
      data: [
        {
          id: this.info.servedModelName,
          object: 'model',
          created: Math.floor(Date.now() / 1000),
          owned_by: 'sglang',
          root: this.info.modelPath,
          parent: null,
          max_model_len: this.engine.info.contextLength,
        },
      ],
    };
  }

  metrics(): Promise<string> {
    return this.metricsRegistry.text();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engine.close();
  }

  private load(): EngineLoad {
    const s = this.engine.stats();
    const page = this.engine.options.pageSize;
    return {
      running: s.running,
      waiting: s.waiting,
      // Pages held by requests (cached pages are evictable or locked by running requests: not counted).
      usedTokens: (s.totalPages - s.freePages - s.cachedPages) * page,
      totalTokens: s.totalPages * page,
    };
  }
}

function isIntListLike(x: unknown): x is number[] {
  return Array.isArray(x) && x.every(isInt);
}

function softmax(xs: number[]): number[] {
  const m = Math.max(...xs);
  if (m === Number.NEGATIVE_INFINITY) return xs.map(() => 1 / xs.length);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}
