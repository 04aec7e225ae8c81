// RemoteRuntime: a RuntimeService that forwards every call to a sglang.runtime.v1.Runtime gRPC server
// (src/grpc/server.ts) at host:port — the REST gateway in one process, the engine in another. Errors come back
// as the RuntimeError the far side threw (HTTP status and body format from trailing metadata, message from the
// status details), so REST answers the same bytes through a RemoteRuntime as through the runtime itself.
import * as grpc from '@grpc/grpc-js';
import {
  RuntimeError,
  statusForGrpcCode,
  type AbortReq,
  type DetokenizeReq,
  type DetokenizeResp,
  type GenerateItem,
  type GenerateReqInput,
  type GenerateShape,
  type RuntimeService,
  type ScoreReq,
  type EmbeddingsReq,
  type EmbeddingsResp,
  type EncodeOutput,
  type EncodeReq,
  type ExpertDistributionOp,
  type ExpertDistributionRecordResp,
  type RerankItem,
  type RerankReq,
  type ScoreResp,
  type TokenizeReq,
  type TokenizeResp,
  type UpdateWeightsReq,
  type UpdateWeightsResp,
} from './runtime-service.js';
import {
  abortRequestCodec,
  decodeGenerateResponse,
  detokenizeRequestCodec,
  detokenizeResponseCodec,
  fromProtoStruct,
  generateRequestCodec,
  listModelsCodec,
  modelInfoCodec,
  scoreRequestCodec,
  scoreResponseCodec,
  encodeRequestCodec,
  encodeResponseCodec,
  expertDistributionResponseCodec,
  embeddingsRequestCodec,
  embeddingsResponseCodec,
  rerankRequestCodec,
  rerankResponseCodec,
  tokenizeRequestCodec,
  tokenizeResponseCodec,
  updateWeightsRequestCodec,
  updateWeightsResponseCodec,
  type ProtoMessage,
} from './proto-codec.js';
import { ERROR_FORMAT_KEY, ERROR_KIND_KEY, ERROR_STATUS_KEY, runtimeService } from '../grpc/proto.js';

export interface RemoteRuntimeOptions {
  /** When set, sent as `authorization: Bearer <apiKey>` on every call. */
  apiKey?: string | null;
  /** Deadline of Ready calls (ms); an unreachable or slow server reads as not ready. Default 5000. */
  readyTimeoutMs?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

type Unary = (req: ProtoMessage, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: ProtoMessage) => void) => grpc.ClientUnaryCall;

const FORMATS = new Set(['error', 'openai', 'text']);

/** A gRPC failure as the error the far side threw (RuntimeError, or a plain Error for a non-RuntimeError). */
export function fromGrpcError(e: unknown): Error {
  const err = e as Partial<grpc.ServiceError>;
  if (typeof err?.code !== 'number') return e instanceof Error ? e : new Error(String(e));
  const details = err.details ?? err.message ?? '';
  const md = err.metadata;
  const kind = md?.get(ERROR_KIND_KEY)[0];
  if (kind === 'plain') return new Error(details);
  const statusText = md?.get(ERROR_STATUS_KEY)[0];
  const status = typeof statusText === 'string' && /^\d{3}$/.test(statusText) ? Number(statusText) : statusForGrpcCode(err.code);
  const fmt = md?.get(ERROR_FORMAT_KEY)[0];
  const format = typeof fmt === 'string' && FORMATS.has(fmt) ? (fmt as RuntimeError['format']) : 'error';
  return new RuntimeError(status, details, format);
}

export class RemoteRuntime implements RuntimeService {
  readonly target: string;
  private readonly client: grpc.Client;
  private readonly apiKey: string | null;
  private readonly readyTimeoutMs: number;

  constructor(target: string, opts: RemoteRuntimeOptions = {}) {
    this.target = target;
    const { Client } = runtimeService();
    this.client = new Client(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      ...opts.channelOptions,
    });
    this.apiKey = opts.apiKey ?? null;
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 5000;
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.apiKey) md.set('authorization', `Bearer ${this.apiKey}`);
    return md;
  }

  private call(method: string, req: ProtoMessage, deadlineMs?: number): Promise<ProtoMessage> {
    const fn = (this.client as unknown as Record<string, Unary>)[method]!.bind(this.client);
    const opts: grpc.CallOptions = deadlineMs !== undefined ? { deadline: Date.now() + deadlineMs } : {};
    return new Promise((resolve, reject) => {
      fn(req, this.metadata(), opts, (err, res) => (err ? reject(fromGrpcError(err)) : resolve(res ?? {})));
    });
  }

  async generate(req: GenerateReqInput, signal?: AbortSignal): Promise<{ shape: GenerateShape; items: AsyncIterable<GenerateItem> }> {
    if (signal?.aborted) throw new RuntimeError(499, 'Aborted', 'error');
    const stream = (this.client as unknown as Record<string, (req: ProtoMessage, md: grpc.Metadata) => grpc.ClientReadableStream<ProtoMessage>>)
      .Generate!.call(this.client, generateRequestCodec.encode(req), this.metadata());
    let cancelled = false;
    const cancel = () => {
      cancelled = true;
      stream.cancel();
    };
    signal?.addEventListener('abort', cancel, { once: true });
    const it = stream[Symbol.asyncIterator]() as AsyncIterator<ProtoMessage>;
    const detach = () => signal?.removeEventListener('abort', cancel);

    let first: IteratorResult<ProtoMessage>;
    try {
      first = await it.next();
    } catch (e) {
      detach();
      if (cancelled) throw new RuntimeError(499, 'Aborted', 'error');
      throw fromGrpcError(e);
    }
    const head = first.done ? null : decodeGenerateResponse(first.value);
    if (!head || !('shape' in head)) {
      detach();
      stream.cancel();
      throw new RuntimeError(500, 'gRPC Generate stream did not start with its shape', 'error');
    }

    // A hand-written iterator rather than a generator, so that return() cancels the call even when the
    // consumer gives up before its first next() (a generator's finally would not run then).
    let ended = false;
    const finish = (cancelCall: boolean) => {
      if (ended) return;
      ended = true;
      detach();
      if (cancelCall && !cancelled) {
        cancelled = true;
        stream.cancel(); // the consumer stopped early: cancelling the call aborts the request remotely
      }
    };
    const iterator: AsyncIterableIterator<GenerateItem> = {
      [Symbol.asyncIterator]() {
        return iterator;
      },
      async next(): Promise<IteratorResult<GenerateItem>> {
        for (;;) {
          if (ended) return { done: true, value: undefined };
          let r: IteratorResult<ProtoMessage>;
          try {
            r = await it.next();
          } catch (e) {
            const wasCancelled = cancelled;
            finish(false);
            if (wasCancelled) return { done: true, value: undefined }; // the consumer went away: the stream just ends
            throw fromGrpcError(e);
          }
          if (r.done) {
            finish(false);
            return { done: true, value: undefined };
          }
          const m = decodeGenerateResponse(r.value);
          if ('item' in m) return { done: false, value: m.item };
        }
      },
      async return(): Promise<IteratorResult<GenerateItem>> {
        finish(true);
        return { done: true, value: undefined };
      },
    };
    return { shape: head.shape, items: iterator };
  }

  async modelInfo(): Promise<Record<string, unknown>> {
    return modelInfoCodec.decode(await this.call('ModelInfo', {}));
  }

  async serverInfo(): Promise<Record<string, unknown>> {
    return fromProtoStruct((await this.call('ServerInfo', {})).info);
  }

  async ready(): Promise<boolean> {
    try {
      return Boolean((await this.call('Ready', {}, this.readyTimeoutMs)).ready);
    } catch (e) {
      // Unreachable, slow or shutting down: not ready (GET /health answers 503). Refusals still throw.
      if (e instanceof RuntimeError && (e.status === 503 || e.status === 408)) return false;
      throw e;
    }
  }

  async healthGenerate(timeoutMs: number): Promise<boolean> {
    try {
      // The far side enforces timeoutMs; the deadline only bounds a hung channel.
      return Boolean((await this.call('HealthGenerate', { timeout_ms: timeoutMs }, timeoutMs + 5000)).ok);
    } catch (e) {
      if (e instanceof RuntimeError && (e.status === 503 || e.status === 408)) return false;
      throw e;
    }
  }

  async flushCache(timeoutS: number): Promise<boolean> {
    return Boolean((await this.call('FlushCache', { timeout_s: timeoutS })).flushed);
  }

  async updateWeightsFromDisk(req: UpdateWeightsReq): Promise<UpdateWeightsResp> {
    return updateWeightsResponseCodec.decode(await this.call('UpdateWeightsFromDisk', updateWeightsRequestCodec.encode(req)));
  }

  async tokenize(req: TokenizeReq): Promise<TokenizeResp> {
    return tokenizeResponseCodec.decode(await this.call('Tokenize', tokenizeRequestCodec.encode(req)));
  }

  async detokenize(req: DetokenizeReq): Promise<DetokenizeResp> {
    return detokenizeResponseCodec.decode(await this.call('Detokenize', detokenizeRequestCodec.encode(req)));
  }

  async score(req: ScoreReq): Promise<ScoreResp> {
    return scoreResponseCodec.decode(await this.call('Score', scoreRequestCodec.encode(req)));
  }

  async encode(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]> {
    return encodeResponseCodec.decode(await this.call('Encode', encodeRequestCodec.encode(req)));
  }

  async classify(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]> {
    return encodeResponseCodec.decode(await this.call('Classify', encodeRequestCodec.encode(req)));
  }

  async embeddings(req: EmbeddingsReq): Promise<EmbeddingsResp> {
    return embeddingsResponseCodec.decode(await this.call('Embeddings', embeddingsRequestCodec.encode(req)));
  }

  async rerank(req: RerankReq): Promise<RerankItem[]> {
    return rerankResponseCodec.decode(await this.call('Rerank', rerankRequestCodec.encode(req)));
  }

  async abortRequest(req: AbortReq): Promise<void> {
    await this.call('AbortRequest', abortRequestCodec.encode(req));
  }

  async expertDistributionRecord(op: ExpertDistributionOp): Promise<ExpertDistributionRecordResp> {
    const method = { start: 'StartExpertDistributionRecord', stop: 'StopExpertDistributionRecord', dump: 'DumpExpertDistributionRecord' }[op];
    if (method === undefined) throw new RuntimeError(400, `Unrecognized expert distribution action: ${String(op)}.`);
    return expertDistributionResponseCodec.decode(await this.call(method, {}));
  }

  async getLoad(): Promise<Record<string, unknown>> {
    return fromProtoStruct((await this.call('GetLoad', {})).load);
  }

  async listModels(): Promise<Record<string, unknown>> {
    return listModelsCodec.decode(await this.call('ListModels', {}));
  }

  async metrics(): Promise<string> {
    return ((await this.call('Metrics', {})).text as string | undefined) ?? '';
  }

  /** Closes the channel (the remote runtime keeps running). */
  async close(): Promise<void> {
    this.client.close();
  }
}
