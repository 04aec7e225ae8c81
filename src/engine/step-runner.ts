// Builds a varlen ForwardBatch from several sequences' new tokens and runs one model step.
import type { NativeModel } from '../native/addon.js';
import { PagePool } from './page-pool.js';

/** A sequence's KV state: its pages and how many tokens they hold. */
export class SequenceKv {
  pages: number[] = [];
  len = 0;
  constructor(private readonly pool: PagePool, private readonly pageSize: number) {}
  reserve(total: number): void {
    const need = Math.ceil(total / this.pageSize) - this.pages.length;
    if (need > 0) this.pages.push(...this.pool.alloc(need));
  }
  release(): void {
    this.pool.release(this.pages);
    this.pages = [];
    this.len = 0;
  }
}

export interface StepInput {
  seq: SequenceKv;
  tokens: number[]; // new tokens appended to the sequence in this step
  logits: 'none' | 'last' | 'all'; // which of them return next-token logits
}

/** Runs one forward over all inputs; returns, per input, its logits rows (each a Float32Array of V). */
export function runStep(model: NativeModel, vocab: number, inputs: StepInput[]): Float32Array[][] {
  const B = inputs.length;
  const T = inputs.reduce((n, i) => n + i.tokens.length, 0);
  const tokenIds = new Int32Array(T);
  const qoIndptr = new Int32Array(B + 1);
  const kvIndptr = new Int32Array(B + 1);
  const kvLens = new Int32Array(B);
  const rows: number[] = [];
  const pageList: number[] = [];
  let t = 0;
  inputs.forEach((inp, b) => {
    inp.seq.reserve(inp.seq.len + inp.tokens.length);
    tokenIds.set(inp.tokens, t);
    if (inp.logits === 'all') for (let i = 0; i < inp.tokens.length; i++) rows.push(t + i);
    if (inp.logits === 'last') rows.push(t + inp.tokens.length - 1);
    t += inp.tokens.length;
    qoIndptr[b + 1] = t;
    kvLens[b] = inp.seq.len + inp.tokens.length;
    pageList.push(...inp.seq.pages);
    kvIndptr[b + 1] = pageList.length;
  });
  const logits = model.forward({
    tokenIds,
    qoIndptr,
    kvIndptr,
    kvPageIndices: Int32Array.from(pageList),
    kvLens,
    logitRows: Int32Array.from(rows),
  });
  for (const inp of inputs) inp.seq.len += inp.tokens.length;
  let r = 0;
  return inputs.map((inp) => {
    const n = inp.logits === 'all' ? inp.tokens.length : inp.logits === 'last' ? 1 : 0;
    const out: Float32Array[] = [];
    for (let i = 0; i < n; i++, r++) out.push(logits.subarray(r * vocab, (r + 1) * vocab));
    return out;
  });
}

export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

export function logSoftmaxAt(row: Float32Array, id: number): number {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return row[id] - max - Math.log(sum);
}

export interface GreedyOptions {
  maxNewTokens: number;
  chunkSize?: number; // prefill chunk length; default: whole prompt at once
  stopIds?: number[]; // stop after emitting one of these (not when ignoreEos)
}

/** Greedy decoding of one prompt (prefill in chunks, then one token per step). Frees its pages at the end. */
export function generateGreedy(model: NativeModel, pool: PagePool, pageSize: number, prompt: number[], opts: GreedyOptions): number[] {
  const vocab = model.info().vocabSize;
  const seq = new SequenceKv(pool, pageSize);
  try {
    const chunk = opts.chunkSize ?? prompt.length;
    let last: Float32Array | undefined;
    for (let i = 0; i < prompt.length; i += chunk) {
      const part = prompt.slice(i, i + chunk);
      const isLast = i + chunk >= prompt.length;
      const rows = runStep(model, vocab, [{ seq, tokens: part, logits: isLast ? 'last' : 'none' }])[0];
      if (isLast) last = rows[0];
    }
    const out: number[] = [];
    while (out.length < opts.maxNewTokens && last) {
      const id = argmax(last);
      out.push(id);
      if (opts.stopIds?.includes(id) || out.length >= opts.maxNewTokens) break;
      [[last]] = runStep(model, vocab, [{ seq, tokens: [id], logits: 'last' }]);
    }
    return out;
  } finally {
    seq.release();
  }
}
