// Pooled requests (embedding, reward and cross-encoder models): one prefill each, nothing sampled. The
// native engine returns the pooled row in the request's finishing event: the last prompt token's
// final-norm hidden state for an embedding model, the classifier's outputs for a sequence classifier
// (at the last token for a reward model, at <s> for a cross-encoder). Embeddings are L2-normalised here,
// as SGLang's pooler normalises them, and rounded to float32 (what the row is and what the gRPC API carries:
// src/http/number-json.ts writes float32-exact arrays with float32's shortest digits); classifier outputs
// stay raw (a reward, a rerank logit).
import type { NativeStepOutput } from '../native/addon.js';

export interface PooledResult {
  rid: string;
  /** The unit-length embedding, or the classifier's raw outputs ([reward], [relevance logit]). */
  embedding: number[];
  promptTokens: number;
  cachedTokens: number;
  /** Seconds from submission to the result. */
  latency: number;
}

/** A pooled request that ended without a result (aborted, not schedulable, engine shutting down). */
export class PooledRequestError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
    this.name = 'PooledRequestError';
  }
}

interface Pending {
  rid: string;
  t0: number;
  resolve: (r: PooledResult) => void;
  reject: (e: PooledRequestError) => void;
}

const FINISH_ABORT = 3;

/** L2 normalisation in double, each result rounded to float32 (a zero vector stays zero). */
export function l2Normalize(v: ArrayLike<number>): number[] {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += (v[i] as number) * (v[i] as number);
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  // A push loop keeps the array packed (fast for JSON.stringify) and avoids Array.from's per-element mapping
  // callback, which V8 runs several times slower on a 1,536-float row.
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) out.push(Math.fround((v[i] as number) * inv));
  return out;
}

export class PooledRequests {
  private readonly live = new Map<number, Pending>();

  /** normalize: L2-normalise the rows (embedding models). */
  constructor(private readonly normalize: boolean) {}

  get size(): number {
    return this.live.size;
  }

  add(numRid: number, rid: string): Promise<PooledResult> {
    return new Promise<PooledResult>((resolve, reject) => {
      this.live.set(numRid, { rid, t0: performance.now(), resolve, reject });
    });
  }

  /** Forgets a request whose submission failed. */
  drop(numRid: number): void {
    this.live.delete(numRid);
  }

  /**
   * Event i of a step, if it is a pooled request's: settles it when it finishes (true), else false.
   * `abortMessage` names why an abort event came (shutdown, or a request that cannot fit in the pool).
   */
  onEvent(out: NativeStepOutput, i: number, abortMessage: () => { message: string; statusCode: number }): boolean {
    const numRid = out.rid[i] as number;
    const p = this.live.get(numRid);
    if (p === undefined) return false;
    if ((out.finish[i] as number) === 0) return true;
    this.live.delete(numRid);
    if ((out.finish[i] as number) === FINISH_ABORT) {
      const { message, statusCode } = abortMessage();
      p.reject(new PooledRequestError(message, statusCode));
      return true;
    }
    const row = out.embedding.subarray(out.embeddingIndptr[i] as number, out.embeddingIndptr[i + 1] as number);
    p.resolve({
      rid: p.rid,
      embedding: this.normalize ? l2Normalize(row) : Array.from(row),
      promptTokens: out.promptTokens[i] as number,
      cachedTokens: out.cachedTokens[i] as number,
      latency: (performance.now() - p.t0) / 1000,
    });
    return true;
  }

  /** Ends every live request with the error (engine failure or close). */
  failAll(message: string, statusCode: number): void {
    for (const p of this.live.values()) p.reject(new PooledRequestError(message, statusCode));
    this.live.clear();
  }
}
