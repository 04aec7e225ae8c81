// RuntimeService: the one interface behind both front doors. The Fastify gateway (src/http) and the grpc-js
// server (src/grpc) each take a RuntimeService; LocalRuntime runs the engine in this process, RemoteRuntime
// forwards to another process over gRPC (`--grpc-target host:port`, the Kubernetes sidecar shape), so REST
// behaves identically in both. Requests and responses here are SGLang's JSON shapes (snake_case, exactly the
// keys of ../shared/CONTRACT.md), so the HTTP layer is a thin mapping and the proto mirrors these types.

/** SGLang's GenerateReqInput (io_struct.py), as a client sends it to POST /generate. */
export interface GenerateReqInput {
  text?: string | string[];
  input_ids?: number[] | number[][];
  sampling_params?: Record<string, unknown> | Record<string, unknown>[] | null;
  stream?: boolean;
  return_logprob?: boolean | boolean[];
  logprob_start_len?: number | number[];
  top_logprobs_num?: number | number[];
  token_ids_logprob?: number[] | number[][] | null;
  return_text_in_logprobs?: boolean;
  rid?: string | string[] | null;
  [key: string]: unknown; // other GenerateReqInput keys (validated by the runtime: unsupported ones are refused)
}

/** [logprob, token_id, text_or_null]; logprob is null for the first prompt position. */
export type LogprobTriple = [number | null, number, string | null];

export type FinishReasonJson =
  | { type: 'stop'; matched: number | string | null }
  | { type: 'length'; length: number }
  | { type: 'abort'; message: string; status_code?: number | null; err_type?: string | null };

export interface MetaInfo {
  id: string;
  finish_reason: FinishReasonJson | null;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  e2e_latency: number; // seconds since the request arrived
  weight_version: string;
  total_retractions?: number;
  input_token_logprobs?: LogprobTriple[];
  output_token_logprobs?: LogprobTriple[];
  input_top_logprobs?: (LogprobTriple[] | null)[];
  output_top_logprobs?: (LogprobTriple[] | null)[];
  input_token_ids_logprobs?: (LogprobTriple[] | null)[];
  output_token_ids_logprobs?: (LogprobTriple[] | null)[];
  [key: string]: unknown;
}

/** One output object of /generate (cumulative text and ids, as SGLang streams them). */
export interface GenerateOutput {
  text: string;
  output_ids: number[];
  meta_info: MetaInfo;
  index?: number; // in batch / n > 1 streams: which output this chunk belongs to
}

/** One item of a generate stream: output `index` (input i, sample j → i * n + j) and its current state. */
export interface GenerateItem {
  index: number;
  output: GenerateOutput;
  /** True on the last item of this index (finish_reason set). */
  final: boolean;
}

export interface GenerateShape {
  /** The response is a JSON list (list input or n > 1), else one object. */
  batch: boolean;
  /** Number of outputs (inputs × n). */
  count: number;
}

export interface TokenizeReq {
  model?: string;
  prompt: string | string[];
  add_special_tokens?: boolean;
}
export interface TokenizeResp {
  tokens: number[] | number[][];
  count: number | number[];
  max_model_len: number;
}
export interface DetokenizeReq {
  model?: string;
  tokens: number[] | number[][];
  skip_special_tokens?: boolean;
}
export interface DetokenizeResp {
  text: string | string[];
}
export interface ScoreReq {
  model?: string;
  query?: string | number[];
  items?: string | string[] | number[][];
  label_token_ids?: number[];
  apply_softmax?: boolean;
  item_first?: boolean;
}
export interface ScoreResp {
  scores: number[][];
  model: string;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  object: 'scoring';
}
/** SGLang's EmbeddingReqInput as /encode and /classify take it (embedding, reward and cross-encoder models). */
export interface EncodeReq {
  model?: string;
  /** A text, or a list of texts (or of [query, document] pairs for a cross-encoder). */
  text?: string | (string | string[])[];
  input_ids?: number[] | number[][];
  rid?: string | string[] | null;
  [key: string]: unknown; // other EmbeddingReqInput keys (refused unless harmless)
}
/** meta_info of an embedding output: no completion or cache counts (SGLang's BatchEmbeddingOutput). */
export interface EncodeMetaInfo {
  id: string;
  finish_reason: FinishReasonJson | null;
  prompt_tokens: number;
  weight_version: string;
  total_retractions: number;
  e2e_latency: number;
  [key: string]: unknown;
}
/** One /encode (/classify) output: the embedding, or [reward] / [score] for classifiers. */
export interface EncodeOutput {
  embedding: number[];
  meta_info: EncodeMetaInfo;
}
/** POST /v1/embeddings (OpenAI): input is a string, a list of strings, token ids or a list of token id lists. */
export interface EmbeddingsReq {
  model?: string;
  input?: string | string[] | number[] | number[][];
  encoding_format?: string;
  dimensions?: number | null;
  user?: string | null;
  [key: string]: unknown;
}
export interface EmbeddingsResp {
  data: { embedding: number[]; index: number; object: 'embedding' }[];
  model: string;
  object: 'list';
  usage: { prompt_tokens: number; total_tokens: number; completion_tokens: number; prompt_tokens_details: null };
}
/** POST /v1/rerank (cross-encoders): SGLang's V1RerankReqInput. */
export interface RerankReq {
  model?: string;
  query?: string;
  documents?: string[];
  top_n?: number | null;
  return_documents?: boolean;
  [key: string]: unknown;
}
/** One entry of /v1/rerank's list (sorted by score, highest first); `document` only with return_documents. */
export interface RerankItem {
  score: number;
  document?: string;
  index: number;
  meta_info: EncodeMetaInfo;
}
export interface UpdateWeightsReq {
  model_path: string;
  load_format?: string | null;
  abort_all_requests?: boolean;
  weight_version?: string | null;
}
export interface UpdateWeightsResp {
  success: boolean;
  message: string;
  num_paused_requests: number;
}
export interface AbortReq {
  rid?: string;
  abort_all?: boolean;
}

/** /start_expert_distribution_record, /stop_expert_distribution_record, /dump_expert_distribution_record. */
export type ExpertDistributionOp = 'start' | 'stop' | 'dump';

/**
 * One recorded forward pass (modes per_pass and per_token), the keys of SGLang's _DetailAccumulator records
 * (eplb/expert_distribution.py). L = the model's layers, E = experts, T = the pass's tokens, K = top-k.
 */
export interface ExpertPassRecord {
  forward_pass_id: number;
  rank: number; // 0: one rank
  gatherer_key: string; // "primary"
  /** per_token: tokens in the pass. */
  num_tokens?: number;
  /** [L][E] tokens routed to each expert in this pass. */
  global_physical_count: number[][];
  /** per_token: [L][T][K] the experts each token chose. */
  topk_ids_of_layer?: number[][][];
}

/** The expert distribution record a dump returns (and writes, see src/runtime/expert-distribution.ts). */
export interface ExpertDistributionRecord {
  mode: string; // stat | stat_approx | per_pass | per_token
  /** Whether the recorder was recording when dumped (a dump clears the record and keeps this state). */
  recording: boolean;
  num_layers: number;
  num_experts: number;
  top_k: number;
  moe_layer_ids: number[];
  /** --expert-distribution-recorder-buffer-size (-1: unbounded). */
  buffer_size: number;
  /** Recorded forward passes in the record (at most buffer_size). */
  num_passes: number;
  /** [L][E] tokens routed to each (layer, expert) over the record (SGLang's logical_count, summed over passes). */
  logical_count: number[][];
  /** per_pass / per_token: the passes, oldest first. */
  records?: ExpertPassRecord[];
  /** The files written (JSON, then CSV). */
  files: string[];
}

export interface ExpertDistributionRecordResp {
  /** SGLang's plain-text body, e.g. "Start recording the expert distribution.\n". */
  message: string;
  /** dump only. */
  record?: ExpertDistributionRecord;
}

/**
 * A failure with SGLang's HTTP status and message. `format` picks the body:
 * 'error' → {"error": {"message": ...}} (SGLang's ValueError path), 'openai' → {"object": "error", "message",
 * "type", "param": null, "code"} (schema validation failures), 'text' → the message as a plain-text body.
 * The gRPC server maps status to a gRPC code (see grpcCodeForStatus) and keeps the message.
 */
export class RuntimeError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly format: 'error' | 'openai' | 'text' = 'error',
  ) {
    super(message);
    this.name = 'RuntimeError';
  }
}

/** HTTP status → gRPC status code (numeric, @grpc/grpc-js `status`). */
export function grpcCodeForStatus(httpStatus: number): number {
  switch (httpStatus) {
    case 400: return 3; // INVALID_ARGUMENT
    case 401: return 16; // UNAUTHENTICATED
    case 403: return 7; // PERMISSION_DENIED
    case 404: return 5; // NOT_FOUND
    case 408: return 4; // DEADLINE_EXCEEDED
    case 429: return 8; // RESOURCE_EXHAUSTED
    case 501: return 12; // UNIMPLEMENTED
    case 503: return 14; // UNAVAILABLE
    default: return httpStatus >= 500 ? 13 : 2; // INTERNAL / UNKNOWN
  }
}

/** gRPC status code → HTTP status (the inverse used by RemoteRuntime). */
export function statusForGrpcCode(code: number): number {
  switch (code) {
    case 3: return 400;
    case 16: return 401;
    case 7: return 403;
    case 5: return 404;
    case 4: return 408;
    case 8: return 429;
    case 12: return 501;
    case 14: return 503;
    default: return 500;
  }
}

export interface RuntimeService {
  /**
   * Validates the request synchronously-or-rejects (RuntimeError 400 with SGLang's message) before any
   * output, then streams items. Every index ends with exactly one `final` item. Aborting `signal` (the
   * client went away) aborts the request in the engine.
   */
  generate(req: GenerateReqInput, signal?: AbortSignal): Promise<{ shape: GenerateShape; items: AsyncIterable<GenerateItem> }>;
  /** GET /get_model_info: exactly SGLang's 9 keys. */
  modelInfo(): Promise<Record<string, unknown>>;
  /** GET /server_info: flat server args + status, max_total_num_tokens, internal_states, version. */
  serverInfo(): Promise<Record<string, unknown>>;
  /** True once the engine can generate (GET /health answers 200 then, 503 before). */
  ready(): Promise<boolean>;
  /** GET /health_generate: one token through the engine within timeoutMs. */
  healthGenerate(timeoutMs: number): Promise<boolean>;
  /** POST /flush_cache: waits up to timeoutS for idle, then flushes; false when busy. */
  flushCache(timeoutS: number): Promise<boolean>;
  updateWeightsFromDisk(req: UpdateWeightsReq): Promise<UpdateWeightsResp>;
  tokenize(req: TokenizeReq): Promise<TokenizeResp>;
  detokenize(req: DetokenizeReq): Promise<DetokenizeResp>;
  score(req: ScoreReq): Promise<ScoreResp>;
  /** POST /encode (embedding models; also reward / cross-encoder models): one output, or a list for a list input. */
  encode(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]>;
  /** POST /classify (reward models): the same request and outputs as /encode. */
  classify(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]>;
  /** POST /v1/embeddings: OpenAI's embeddings API over the embedding model. */
  embeddings(req: EmbeddingsReq): Promise<EmbeddingsResp>;
  /** POST /v1/rerank: query × documents through the cross-encoder, sorted by score. */
  rerank(req: RerankReq): Promise<RerankItem[]>;
  abortRequest(req: AbortReq): Promise<void>;
  /**
   * The expert distribution recorder (MoE models, --expert-distribution-recorder-mode): 'start' clears the
   * record and records, 'stop' stops, 'dump' writes the record to SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR,
   * returns it, and clears it. RuntimeError 400 when the server runs without a recorder mode.
   */
  expertDistributionRecord(op: ExpertDistributionOp): Promise<ExpertDistributionRecordResp>;
  /** GET /get_load. */
  getLoad(): Promise<Record<string, unknown>>;
  /** GET /v1/models. */
  listModels(): Promise<Record<string, unknown>>;
  /** Prometheus text exposition of the engine's metrics (GET /metrics with --enable-metrics). */
  metrics(): Promise<string>;
  close(): Promise<void>;
}
