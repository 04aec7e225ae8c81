// Options of the serving engine front (ServingEngine.create), with SGLang's server-argument names in the
// comments and the defaults chosen for the CPU backend where SGLang's assume a GPU.
import { builtinModelDir } from './builtin-model.js';
import type { StepTiming } from './engine-output.js';
import type { ExpertRecorderMode } from '../native/addon.js';

/** SGLang's --expert-distribution-recorder-mode choices (server_args.py). */
export const EXPERT_RECORDER_MODES: readonly ExpertRecorderMode[] = ['stat', 'stat_approx', 'per_pass', 'per_token'];

export interface ServingEngineOptions {
  /** --model-path: a Hugging Face model directory. Default: the built-in stories260k. */
  modelPath?: string;
  /** --tokenizer-path. Default: the model directory. */
  tokenizerPath?: string;
  /** --page-size (SGLang default 1). */
  pageSize?: number;
  /**
   * --max-total-tokens: KV cache capacity in tokens (numPages = floor(maxTotalTokens / pageSize)).
   * SGLang sizes it from free GPU memory (mem_fraction_static); the CPU default is 16384 tokens.
   */
  maxTotalTokens?: number;
  /** --chunked-prefill-size (SGLang default 8192); -1 disables chunking. */
  chunkedPrefillSize?: number;
  /** --max-prefill-tokens (SGLang default 16384): prefill token budget per step. */
  maxPrefillTokens?: number;
  /**
   * --max-running-requests. SGLang's default is derived from the pool (128 in the contract's run); on the
   * CPU backend 64 is the default: larger decode batches gain little on a few cores.
   */
  maxRunningRequests?: number;
  /** --disable-radix-cache (default false). */
  disableRadixCache?: boolean;
  /** --schedule-policy: 'fcfs' (SGLang's default here) or 'lpm' (longest prefix match). */
  schedulePolicy?: 'fcfs' | 'lpm';
  /** --random-seed: seed source for requests without sampling_seed. Default: random. */
  randomSeed?: number;
  /** --device: 'cuda' (a GPU, error without one), 'cpu', or 'auto' (default: CUDA when a GPU is present). */
  device?: 'auto' | 'cpu' | 'cuda';
  /**
   * --mem-fraction-static (GPU): weights + KV pool take this fraction of device memory (default 0.85); the
   * pool gets what the weights leave, unless --max-total-tokens fixes it.
   */
  memFractionStatic?: number;
  /** --cuda-graph-max-bs (GPU): decode batches up to this size replay captured CUDA graphs (default 256). */
  cudaGraphMaxBs?: number;
  /** --disable-cuda-graph (GPU): run every step eagerly. */
  disableCudaGraph?: boolean;
  /**
   * --disable-overlap-schedule: plan each step only after the previous one finished. By default (as in SGLang)
   * the engine thread plans and builds step n+1 while step n runs on the device.
   */
  disableOverlapSchedule?: boolean;
  /**
   * --is-embedding: serve a CausalLM checkpoint as an embedding model (the last token's final-norm hidden
   * state, L2-normalised). Sequence classifiers (reward models, cross-encoders) are pooled models anyway.
   */
  isEmbedding?: boolean;
  /** No flag (tests): false runs a prefill's last layer on every token, not only the logits rows (default true). */
  pruneLastLayer?: boolean;
  /**
   * --dtype. On a GPU: 'float32' / 'float' run the float32 CUDA backend (f32 activations, KV cache and weights,
   * f32 math: a correctness mode that matches float32 references); 'auto' / 'bfloat16' (default) the bf16 one.
   * The CPU backend computes in f32 on the weights as stored whatever this says (the server checks the flag
   * against the checkpoint there).
   */
  dtype?: EngineDtype;
  /**
   * --expert-distribution-recorder-mode (MoE models): 'stat' / 'stat_approx' (per-layer, per-expert token
   * counts; stat_approx counts exactly, as stat), 'per_pass' (also each forward pass's counts) or 'per_token'
   * (also each token's chosen experts). Default none: the recorder endpoints answer 400.
   */
  expertDistributionRecorderMode?: ExpertRecorderMode | null;
  /**
   * --expert-distribution-recorder-buffer-size: the record keeps the last N recorded forward passes (default
   * 1000, as SGLang); a negative value keeps all of them (reported as -1).
   */
  expertDistributionRecorderBufferSize?: number;
  /** Called after every engine step with where its time went (benchmarks). */
  onStepTiming?: (t: StepTiming) => void;
}

/** SGLang's --dtype choices. */
export const ENGINE_DTYPES = ['auto', 'bfloat16', 'float16', 'float32', 'half', 'float'] as const;
export type EngineDtype = (typeof ENGINE_DTYPES)[number];

/** Whether a --dtype value asks for float32 compute ('float32' or its alias 'float'). */
export function isFloat32Dtype(d: string): boolean {
  return d === 'float32' || d === 'float';
}

export type ResolvedEngineOptions = Required<Omit<ServingEngineOptions, 'randomSeed' | 'onStepTiming' | 'tokenizerPath' | 'device' | 'expertDistributionRecorderMode'>> & {
  tokenizerPath: string;
  /** null: no recorder. */
  expertDistributionRecorderMode: ExpertRecorderMode | null;
  randomSeed: number | undefined;
  onStepTiming: ((t: StepTiming) => void) | undefined;
  /** The device chosen ('auto' resolved). */
  device: 'cpu' | 'cuda';
  /** KV pages; 0 until the engine sizes the pool from GPU memory (then numPages / maxTotalTokens are set). */
  numPages: number;
};

export const ENGINE_DEFAULTS = {
  pageSize: 1,
  maxTotalTokens: 16384,
  chunkedPrefillSize: 8192,
  maxPrefillTokens: 16384,
  maxRunningRequests: 64,
  maxRunningRequestsCuda: 256,
  memFractionStatic: 0.85,
  cudaGraphMaxBs: 256,
  disableRadixCache: false,
  schedulePolicy: 'fcfs',
  expertDistributionRecorderBufferSize: 1000,
} as const;

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

/**
 * Applies the defaults and checks the values; throws RangeError naming the option. `cudaAvailable` says
 * whether a GPU backend is there ('auto' picks it; 'cuda' without it is an error).
 */
export function resolveEngineOptions(opts: ServingEngineOptions = {}, cudaAvailable = false): ResolvedEngineOptions {
  const modelPath = opts.modelPath ?? builtinModelDir();
  // SGL_DEVICE (as the --device flag's variable) also sets the default here: `npm test` pins the CPU, whose
  // goldens are exact, on machines that have a GPU too (the GPU has its own suite, npm run test:gpu).
  const requested = opts.device ?? (process.env.SGL_DEVICE as ServingEngineOptions['device']) ?? 'auto';
  if (requested !== 'auto' && requested !== 'cpu' && requested !== 'cuda') throw new RangeError(`device must be 'auto', 'cpu' or 'cuda', got ${String(requested)}`);
  if (requested === 'cuda' && !cudaAvailable) throw new RangeError("device 'cuda': no CUDA device (or the addon was built without CUDA)");
  const device = requested === 'cpu' ? 'cpu' : requested === 'cuda' || cudaAvailable ? 'cuda' : 'cpu';
  const memFractionStatic = opts.memFractionStatic ?? ENGINE_DEFAULTS.memFractionStatic;
  if (!(memFractionStatic > 0 && memFractionStatic < 1)) throw new RangeError(`memFractionStatic must be in (0, 1), got ${memFractionStatic}`);
  const pageSize = positiveInt('pageSize', opts.pageSize ?? ENGINE_DEFAULTS.pageSize);
  // On the GPU without --max-total-tokens the pool is sized from memory once the weights are loaded.
  const fromMemory = device === 'cuda' && opts.maxTotalTokens === undefined;
  const maxTotalTokens = fromMemory ? 0 : positiveInt('maxTotalTokens', opts.maxTotalTokens ?? ENGINE_DEFAULTS.maxTotalTokens);
  const numPages = Math.floor(maxTotalTokens / pageSize);
  if (numPages < 1 && !fromMemory) throw new RangeError(`maxTotalTokens (${maxTotalTokens}) must hold at least one page of ${pageSize} tokens`);
  const chunkedPrefillSize = opts.chunkedPrefillSize ?? ENGINE_DEFAULTS.chunkedPrefillSize;
  if (!Number.isInteger(chunkedPrefillSize) || (chunkedPrefillSize < 1 && chunkedPrefillSize !== -1)) {
    throw new RangeError(`chunkedPrefillSize must be a positive integer or -1, got ${chunkedPrefillSize}`);
  }
  const schedulePolicy = opts.schedulePolicy ?? ENGINE_DEFAULTS.schedulePolicy;
  if (schedulePolicy !== 'fcfs' && schedulePolicy !== 'lpm') throw new RangeError(`schedulePolicy must be 'fcfs' or 'lpm', got ${String(schedulePolicy)}`);
  if (opts.randomSeed !== undefined && !Number.isSafeInteger(opts.randomSeed)) throw new RangeError(`randomSeed must be an integer, got ${opts.randomSeed}`);
  const dtype = opts.dtype ?? 'auto';
  if (!(ENGINE_DTYPES as readonly string[]).includes(dtype)) throw new RangeError(`dtype must be one of ${ENGINE_DTYPES.join(', ')}, got ${String(dtype)}`);
  const recorderMode = opts.expertDistributionRecorderMode ?? null;
  if (recorderMode !== null && !EXPERT_RECORDER_MODES.includes(recorderMode)) {
    throw new RangeError(`expertDistributionRecorderMode must be one of ${EXPERT_RECORDER_MODES.join(', ')}, got ${String(recorderMode)}`);
  }
  let recorderBuffer = opts.expertDistributionRecorderBufferSize ?? ENGINE_DEFAULTS.expertDistributionRecorderBufferSize;
  if (!Number.isInteger(recorderBuffer) || recorderBuffer === 0) {
    throw new RangeError(`expertDistributionRecorderBufferSize must be a positive integer, or negative for no limit, got ${recorderBuffer}`);
  }
  if (recorderBuffer < 0) recorderBuffer = -1; // SGLang: any negative size is an unbounded buffer
  return {
    modelPath,
    tokenizerPath: opts.tokenizerPath ?? modelPath,
    pageSize,
    maxTotalTokens,
    numPages,
    chunkedPrefillSize,
    maxPrefillTokens: positiveInt('maxPrefillTokens', opts.maxPrefillTokens ?? ENGINE_DEFAULTS.maxPrefillTokens),
    maxRunningRequests: positiveInt(
      'maxRunningRequests',
      opts.maxRunningRequests ?? (device === 'cuda' ? ENGINE_DEFAULTS.maxRunningRequestsCuda : ENGINE_DEFAULTS.maxRunningRequests),
    ),
    device,
    memFractionStatic,
    cudaGraphMaxBs: positiveInt('cudaGraphMaxBs', opts.cudaGraphMaxBs ?? ENGINE_DEFAULTS.cudaGraphMaxBs),
    disableCudaGraph: opts.disableCudaGraph ?? false,
    disableOverlapSchedule: opts.disableOverlapSchedule ?? false,
    isEmbedding: opts.isEmbedding ?? false,
    pruneLastLayer: opts.pruneLastLayer ?? true,
    dtype,
    disableRadixCache: opts.disableRadixCache ?? ENGINE_DEFAULTS.disableRadixCache,
    schedulePolicy,
    randomSeed: opts.randomSeed,
    expertDistributionRecorderMode: recorderMode,
    expertDistributionRecorderBufferSize: recorderBuffer,
    onStepTiming: opts.onStepTiming,
  };
}
