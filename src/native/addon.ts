// Loads the compiled addon (build/Release/sglang_native.node, built by cmake-js at npm install) and types it.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface ModelInfo {
  architecture: string;
  architectures: string[];
  modelType: string;
  dtype: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Sequence classifiers (reward / rerank models): labels per logits row; 0 for language models. */
  numLabels: number;
  /** False for pooled models (SGLang's is_generation): embedding mode, reward classifiers, cross-encoders. */
  isGeneration: boolean;
  /**
   * What a pooled request returns: 'embedding' = a causal LM with isEmbedding (the last token's final-norm
   * hidden state), 'classify' = LlamaForSequenceClassification (the score head at the last token), 'rerank' =
   * XLMRobertaForSequenceClassification / any encoder classifier (the classifier on the first token);
   * 'none' = a generation model.
   */
  poolingKind: 'none' | 'embedding' | 'classify' | 'rerank';
  /** Width of a pooled row: hiddenSize ('embedding'), numLabels ('classify' / 'rerank'); 0 for 'none'. */
  embeddingDim: number;
  contextLength: number;
  /** MoE models: routed experts per MoE layer (config num_experts); 0 for dense models. */
  numExperts: number;
  /** MoE models: experts chosen per token (config num_experts_per_tok). */
  numExpertsPerTok: number;
  /** The layers whose MLP is a sparse MoE block (empty for dense models). */
  moeLayerIds: number[];
  bosTokenId: number; // -1 when absent
  padTokenId: number; // -1 when absent
  eosTokenIds: number[];
  ropeType: string;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
  configJson: string;
  generationConfigJson: string | null;
  weightBytes: number;
  kvBytes: number;
  numPages: number;
  pageSize: number;
  backend: string;
  /** The dtype the model computes and keeps its KV cache in: 'float32' (CPU, or CUDA with --dtype float32) or 'bfloat16' (CUDA). */
  activationDtype: string;
}

/** One varlen step; see addon/models/forward_batch.h for the exact semantics. */
export interface ForwardBatch {
  tokenIds: Int32Array; // [T] tokens of seq 0, then seq 1, ...
  qoIndptr: Int32Array; // [B+1] token offsets per sequence
  kvIndptr: Int32Array; // [B+1] offsets into kvPageIndices
  kvPageIndices: Int32Array; // page ids of each sequence in position order
  kvLens: Int32Array; // [B] cached tokens after this step, this step's included
  logitRows: Int32Array; // [R] step token indices whose next-token logits are returned
}

export interface NativeModel {
  info(): ModelInfo;
  /** Returns logits [R * V] (float32). Throws RangeError for an inconsistent batch. */
  forward(batch: ForwardBatch): Float32Array;
  close(): void;
}

/** Options of the native serving engine (addon/napi/native_engine.cc). */
export interface NativeEngineOptions {
  modelPath: string;
  numPages: number; // KV pool size in pages (max_total_tokens / pageSize); 0: from GPU memory
  pageSize: number;
  device?: 'auto' | 'cpu' | 'cuda'; // default 'cpu'
  memFractionStatic?: number; // (0, 1), with numPages 0 (default 0.85)
  cudaGraphMaxBs?: number; // decode batches up to this size replay CUDA graphs (default 256)
  disableCudaGraph?: boolean;
  disableOverlapSchedule?: boolean; // default false: step n+1 is planned while step n runs
  /** SGLang's --dtype: 'float32' / 'float' select the float32 CUDA backend on a GPU; ignored on the CPU. Default 'auto'. */
  dtype?: 'auto' | 'bfloat16' | 'float16' | 'float32' | 'half' | 'float';
  chunkedPrefillSize: number; // -1 = no chunking
  maxPrefillTokens: number; // prefill token budget per step
  maxRunningRequests: number;
  disableRadixCache: boolean;
  schedulePolicy: 'fcfs' | 'lpm';
  randomSeed?: number; // seed source for requests without their own seed
  /**
   * SGLang's --is-embedding: a causal LM (LlamaForCausalLM / Qwen2ForCausalLM) serves pooled requests, each
   * returning its last token's final-norm hidden state (raw, not normalised). Default false. Sequence
   * classifiers (numLabels > 0) are pooled models whether or not it is set.
   */
  isEmbedding?: boolean;
  /**
   * A prefill's last layer on the logits rows alone (each sequence's wanted rows a suffix of its tokens: an
   * embedding's last token, a prompt's last token): default true; false runs every layer on every token.
   */
  pruneLastLayer?: boolean;
  /**
   * SGLang's --expert-distribution-recorder-mode: 'stat', 'stat_approx' (counted as stat), 'per_pass' or
   * 'per_token' (TypeError otherwise). Absent: no recorder, and expertRecord throws. Typed as a string: the
   * addon checks it.
   */
  expertDistributionRecorderMode?: ExpertRecorderMode | string;
  /** SGLang's --expert-distribution-recorder-buffer-size: forward passes kept (default 1000), -1 all. */
  expertDistributionRecorderBufferSize?: number;
  /** Called on the JS thread once per engine step that produced events (and once on a fatal error). */
  onStep: (out: NativeStepOutput) => void;
}

/** One request as the engine takes it: normalised sampling params, token ids. */
export interface NativeRequest {
  rid: number; // caller-chosen integer (safe integer), unique among live requests
  inputIds: Int32Array; // [prompt_len]
  maxNewTokens: number; // 0 = prefill only (cache the prompt, report prompt logprobs, no token)
  minNewTokens: number;
  temperature: number;
  topP: number;
  topK: number; // -1 = all
  minP: number;
  frequencyPenalty: number;
  presencePenalty: number;
  repetitionPenalty: number;
  ignoreEos: boolean;
  stopTokenIds: Int32Array; // [S]
  logitBiasIds?: Int32Array; // [Nb] token ids
  logitBiasValues?: Float32Array; // [Nb] biases, aligned with logitBiasIds
  seed: number | null; // null = from the engine's seed source
  returnLogprob: boolean;
  topLogprobsNum: number; // 0 = none
  tokenIdsLogprob: Int32Array | null; // [Ni] ids whose logprobs are reported per position
  logprobStartLen: number; // -1 = no prompt logprobs; else the first prompt position reported
  /**
   * A pooled request (default false): prefill only, no sampling, no logprobs (those fields are ignored but
   * still checked); it finishes with one event (finish 2, token -1) carrying its row in `embedding`. Must match
   * the model (ModelInfo.isGeneration === !pooled): submit throws an Error otherwise.
   */
  pooled?: boolean;
}

/**
 * The events of one engine step, as parallel typed arrays (n events). Variable-length parts are CSR:
 * event i owns [xIndptr[i], xIndptr[i+1]) of the matching value arrays.
 */
export interface NativeStepOutput {
  n: number;
  rid: Float64Array; // [n]
  token: Int32Array; // [n] sampled token, -1 when none (abort, prefill-only finish)
  logprob: Float32Array; // [n] logprob of token (when returnLogprob)
  finish: Int32Array; // [n] 0 running, 1 stop, 2 length, 3 abort
  matchedStop: Int32Array; // [n] the EOS / stop token id that ended it, else -1
  promptTokens: Int32Array; // [n]
  completionTokens: Int32Array; // [n]
  cachedTokens: Int32Array; // [n]
  topIndptr: Int32Array; // [n+1] output top logprobs
  topIds: Int32Array;
  topLogprobs: Float32Array;
  idsIndptr: Int32Array; // [n+1] output token_ids_logprob values, in the request's id order
  idsLogprobs: Float32Array;
  inputStart: Int32Array; // [n] first prompt position of the input logprobs in this event, -1 none
  inputIndptr: Int32Array; // [n+1] positions; logprob NaN = none (position 0)
  inputLogprobs: Float32Array;
  inputTopIndptr: Int32Array; // [n+1] positions * topLogprobsNum entries (id -1 / NaN at position 0)
  inputTopIds: Int32Array;
  inputTopLogprobs: Float32Array;
  inputIdsIndptr: Int32Array; // [n+1] positions * |tokenIdsLogprob| entries
  inputIdsLogprobs: Float32Array;
  /**
   * [n+1] pooled rows: a pooled request's finishing event owns ModelInfo.embeddingDim values, raw (the hidden
   * state of its last prompt token, or the classifier's logits: rerank / reward scores); other events none.
   */
  embeddingIndptr: Int32Array;
  embedding: Float32Array;
  /** Where the step's native time went (microseconds); forward 0 when no forward ran. */
  scheduleUs: number;
  forwardUs: number;
  sampleUs: number;
  batchSize: number; // sequences in the forward
  numTokens: number; // tokens in the forward
  /** Wall time of the engine loop's previous forward-running iteration, whole (commands, schedule,
   * forward, sample, posting to JS); 0 before the first. Pair it with the previous output's forwardUs. */
  prevLoopUs: number;
  /** Set (with n = 0) when the engine hit a fatal error; every live request was then aborted. */
  error?: string;
}

export interface NativeEngineStats {
  waiting: number;
  running: number;
  freePages: number;
  cachedPages: number; // owned by the radix cache (evictable or locked)
  livePages: number; // owned by running requests outside the cache
  totalPages: number;
  totalRetractions: number;
  steps: number; // forwards run
}

/** SGLang's expert distribution recorder modes (--expert-distribution-recorder-mode). */
export type ExpertRecorderMode = 'stat' | 'stat_approx' | 'per_pass' | 'per_token';

/**
 * NativeEngine.expertRecord('dump') (addon/engine/expert_recorder.h): the record over the window of the last
 * buffer-size recorded forward passes. L = numLayers (every layer of the model; dense layers count 0),
 * E = numExperts, K = topK, P = numPasses.
 */
export interface NativeExpertRecord {
  mode: ExpertRecorderMode;
  /** Whether the recorder was recording when the dump was taken. */
  recording: boolean;
  numLayers: number;
  numExperts: number;
  topK: number;
  /** Recorded forward passes in the window. */
  numPasses: number;
  /** [L * E] tokens routed to each (layer, expert), summed over the window. */
  logicalCount: Int32Array;
  /** [P] per_pass / per_token: each pass's forward pass id, ascending (empty in the stat modes). */
  passIds: Float64Array;
  /** [P * L * E] per_pass / per_token: each pass's counts. */
  passCounts: Int32Array;
  /** [P] per_token: tokens in each pass (empty otherwise). */
  passTokens: Int32Array;
  /** per_token: per pass [L, T_p, K] chosen expert ids, the passes concatenated (empty otherwise). */
  topkIds: Int32Array;
}

export interface NativeEngine {
  info(): ModelInfo;
  /**
   * Queues a request; throws TypeError (naming the field) for a malformed one, Error after close, and Error
   * for a request of the wrong kind ("... is not a generation model ..." for a non-pooled request on a pooled
   * model, "... is not an embedding model ..." for a pooled one on a generation model).
   */
  submit(req: NativeRequest): void;
  /** Aborts a live request (no-op for an unknown rid): it ends with an abort event. */
  abort(rid: number): void;
  /** Empties the radix cache; resolves false (nothing done) while requests wait or run. */
  flushCache(): Promise<boolean>;
  /**
   * Loads another checkpoint of the same architecture and shape (safetensors dir) and swaps it in between
   * steps. Only while idle (the caller holds new requests): fails with a message while requests run, and
   * on any load error, keeping the served weights. The radix cache starts empty afterwards.
   */
  updateWeights(modelPath: string): Promise<{ success: boolean; message: string }>;
  /**
   * The expert distribution recorder, run on the engine thread between steps, in call order: 'start' clears
   * the record and records, 'stop' keeps it (both resolve null), 'dump' resolves the record (and keeps it).
   * Throws Error("expert distribution recording is off: launch with --expert-distribution-recorder-mode ...")
   * synchronously when the engine has no recorder mode, TypeError for another op.
   */
  expertRecord(op: 'start' | 'stop'): Promise<null>;
  /** 'dump_reset': the record, then cleared between the same two steps (recording stays on or off). */
  expertRecord(op: 'dump' | 'dump_reset'): Promise<NativeExpertRecord>;
  expertRecord(op: 'start' | 'stop' | 'dump' | 'dump_reset'): Promise<NativeExpertRecord | null>;
  /** A snapshot taken after the last step (thread-safe). */
  stats(): NativeEngineStats;
  /** Aborts everything (abort events are delivered first), joins the engine thread, frees the model. */
  close(): Promise<void>;
}

export interface NativeAddon {
  NativeModel: new (opts: { modelPath: string; numPages: number; pageSize?: number; device?: 'auto' | 'cpu' | 'cuda'; dtype?: NativeEngineOptions['dtype'] }) => NativeModel;
  NativeEngine: new (opts: NativeEngineOptions) => NativeEngine;
  /** memcpy of a `bytes` buffer across the CPU threads, GB/s of bytes copied (each byte counted once). */
  cpuMemcpyBandwidthGBs(bytes: number, iters?: number): number;
  /** Read-only sweep of a `bytes` buffer across the CPU threads, GB/s of bytes read. */
  cpuReadBandwidthGBs(bytes: number, iters?: number): number;
  /**
   * The JSON text of the numbers ("[a,b,...]", byte for byte what JSON.stringify writes for them) in out's
   * first bytes; returns their count, or -1 when out is too small (27 bytes a number + 2 always suffice).
   * float32: each value as a float32, in float32's shortest round-trip digits (Number.prototype.toString's
   * layout), for rows that are float32 values (embeddings).
   */
  formatNumberArray(values: Float64Array, out: Uint8Array, float32?: boolean): number;
  cudaCompiled: boolean;
  cudaDeviceCount?: () => number;
  cudaDeviceName?: () => string | null;
}

/** True when the addon has the CUDA backend and a GPU is present. */
export function cudaAvailable(addon: NativeAddon): boolean {
  return addon.cudaCompiled && (addon.cudaDeviceCount?.() ?? 0) > 0;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** The project root, found by walking up to package.json (works from src/ under tsx and from dist/src/). */
export function projectRoot(): string {
  let dir = here;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'CMakeLists.txt'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the project root above ${here}`);
    dir = up;
  }
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const root = projectRoot();
  const candidates = [
    process.env.SGL_ADDON_PATH,
    path.join(root, 'build', 'Release', 'sglang_native.node'),
    path.join(root, 'build', 'Debug', 'sglang_native.node'),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`native addon not built (looked in ${candidates.join(', ')}): run \`npm install\` or \`npm run build\``);
  }
  const require = createRequire(import.meta.url);
  cached = require(found) as NativeAddon;
  return cached;
}
