// A scripted RuntimeService for the gRPC transport tests: records what reaches it and answers what the test set.
import {
  RuntimeError,
  type AbortReq,
  type DetokenizeReq,
  type EmbeddingsReq,
  type EmbeddingsResp,
  type EncodeOutput,
  type EncodeReq,
  type ExpertDistributionOp,
  type ExpertDistributionRecordResp,
  type RerankItem,
  type RerankReq,
  type GenerateItem,
  type GenerateReqInput,
  type GenerateShape,
  type RuntimeService,
  type ScoreReq,
  type ScoreResp,
  type TokenizeReq,
  type TokenizeResp,
  type UpdateWeightsReq,
  type UpdateWeightsResp,
} from '../../src/runtime/runtime-service.js';

export interface GenerateScript {
  shape: GenerateShape;
  items: GenerateItem[];
  /** Throw this after the items (a mid-stream failure). */
  failAfter?: Error;
  /** After the items, wait until the signal aborts (a request the client cancels). */
  hang?: boolean;
}

export class FakeRuntime implements RuntimeService {
  calls: { method: string; arg?: unknown }[] = [];
  isReady = true;
  /** Thrown by the next call of any method (then cleared). */
  failNext: Error | null = null;
  generateScript: GenerateScript = { shape: { batch: false, count: 1 }, items: [] };
  /** Set when a generate signal aborted / the items iterator was closed early. */
  aborted = false;
  iteratorReturned = false;
  abortedWaiters: (() => void)[] = [];

  modelInfoResult: Record<string, unknown> = {};
  serverInfoResult: Record<string, unknown> = {};
  loadResult: Record<string, unknown> = {};
  modelsResult: Record<string, unknown> = {};
  tokenizeResult: TokenizeResp = { tokens: [], count: 0, max_model_len: 0 };
  detokenizeResult = { text: '' };
  scoreResult: ScoreResp = { scores: [], model: '', usage: null, object: 'scoring' };
  updateResult: UpdateWeightsResp = { success: true, message: '', num_paused_requests: 0 };
  metricsText = '';
  encodeResult: EncodeOutput | EncodeOutput[] = [];
  embeddingsResult: EmbeddingsResp = { data: [], model: '', object: 'list', usage: { prompt_tokens: 0, total_tokens: 0, completion_tokens: 0, prompt_tokens_details: null } };
  rerankResult: RerankItem[] = [];
  healthOk = true;
  flushed = true;
  expertResult: ExpertDistributionRecordResp = { message: '' };

  private record(method: string, arg?: unknown): void {
    this.calls.push({ method, arg });
    const f = this.failNext;
    if (f) {
      this.failNext = null;
      throw f;
    }
  }

  lastArg(method: string): unknown {
    return [...this.calls].reverse().find((c) => c.method === method)?.arg;
  }

  whenAborted(): Promise<void> {
    return this.aborted ? Promise.resolve() : new Promise((r) => this.abortedWaiters.push(r));
  }

  async generate(req: GenerateReqInput, signal?: AbortSignal): Promise<{ shape: GenerateShape; items: AsyncIterable<GenerateItem> }> {
    this.record('generate', req);
    if (req.text === 'invalid') throw new RuntimeError(400, 'The input (99 tokens) is longer than the model\'s context length (64 tokens).', 'error');
    const script = this.generateScript;
    const onAbort = () => {
      this.aborted = true;
      for (const w of this.abortedWaiters.splice(0)) w();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const self = this;
    async function* items(): AsyncGenerator<GenerateItem> {
      try {
        for (const it of script.items) yield it;
        if (script.failAfter) throw script.failAfter;
        if (script.hang) {
          await new Promise<void>((resolve) => {
            if (signal?.aborted) resolve();
            signal?.addEventListener('abort', () => resolve(), { once: true });
          });
        }
      } finally {
        self.iteratorReturned = true;
      }
    }
    return { shape: script.shape, items: items() };
  }

  async modelInfo() {
    this.record('modelInfo');
    return this.modelInfoResult;
  }
  async serverInfo() {
    this.record('serverInfo');
    return this.serverInfoResult;
  }
  async ready() {
    return this.isReady;
  }
  async healthGenerate(timeoutMs: number) {
    this.record('healthGenerate', timeoutMs);
    return this.healthOk;
  }
  async flushCache(timeoutS: number) {
    this.record('flushCache', timeoutS);
    return this.flushed;
  }
  async updateWeightsFromDisk(req: UpdateWeightsReq) {
    this.record('updateWeightsFromDisk', req);
    return this.updateResult;
  }
  async tokenize(req: TokenizeReq) {
    this.record('tokenize', req);
    return this.tokenizeResult;
  }
  async detokenize(req: DetokenizeReq) {
    this.record('detokenize', req);
    return this.detokenizeResult;
  }
  async encode(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]> {
    this.record('encode', req);
    return this.encodeResult;
  }

  async classify(req: EncodeReq): Promise<EncodeOutput | EncodeOutput[]> {
    this.record('classify', req);
    return this.encodeResult;
  }

  async embeddings(req: EmbeddingsReq): Promise<EmbeddingsResp> {
    this.record('embeddings', req);
    return this.embeddingsResult;
  }

  async rerank(req: RerankReq): Promise<RerankItem[]> {
    this.record('rerank', req);
    return this.rerankResult;
  }

  async score(req: ScoreReq) {
    this.record('score', req);
    return this.scoreResult;
  }
  async abortRequest(req: AbortReq) {
    this.record('abortRequest', req);
  }
  async expertDistributionRecord(op: ExpertDistributionOp) {
    this.record('expertDistributionRecord', op);
    return this.expertResult;
  }
  async getLoad() {
    this.record('getLoad');
    return this.loadResult;
  }
  async listModels() {
    this.record('listModels');
    return this.modelsResult;
  }
  async metrics() {
    this.record('metrics');
    return this.metricsText;
  }
  async close() {}
}
