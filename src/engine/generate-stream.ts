// The consumer side of one generate() call: an async iterator over GenerateChunk. The engine pushes chunks
// from its onStep handler; a waiting next() is resolved at once. Leaving early (break out of for-await,
// return(), throw()) cancels the request, which aborts it in the native engine.
import type { GenerateChunk } from './engine-output.js';

export class GenerateStream implements AsyncIterableIterator<GenerateChunk> {
  private queue: GenerateChunk[] = [];
  private head = 0;
  private waiter: ((r: IteratorResult<GenerateChunk>) => void) | null = null;
  private ended = false; // no more chunks will be pushed
  private cancelled = false;

  /**
   * @param rid the request's id (SGLang's rid; with n > 1 each sample has its own id in the chunks)
   * @param n number of samples; chunks carry their index
   * @param promptTokens prompt length in tokens
   * @param onCancel called once when the consumer leaves before the end
   */
  constructor(
    readonly rid: string,
    readonly n: number,
    readonly promptTokens: number,
    private readonly onCancel: () => void,
  ) {}

  /**
   * Engine side: queues a chunk (ignored after the end or a cancel). A consumer that falls behind gets the
   * updates of a sample merged into one chunk (cumulative fields from the newest, deltas and new ids
   * joined), so a slow reader holds at most one pending chunk per sample.
   */
  push(chunk: GenerateChunk): void {
    if (this.ended) return;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w({ value: chunk, done: false });
      return;
    }
    const q = this.queue;
    for (let k = q.length - 1; k >= this.head; k--) {
      const prev = q[k] as GenerateChunk;
      if (prev.index !== chunk.index) continue;
      if (prev.finishReason === null) {
        chunk.delta = prev.delta + chunk.delta;
        chunk.newIds = prev.newIds.concat(chunk.newIds);
        q[k] = chunk;
        return;
      }
      break;
    }
    q.push(chunk);
  }

  /** Engine side: no more chunks; the iterator ends once the queue is drained. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w({ value: undefined, done: true });
    }
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get isCancelled(): boolean {
    return this.cancelled;
  }

  next(): Promise<IteratorResult<GenerateChunk>> {
    if (this.head < this.queue.length) {
      const value = this.queue[this.head++] as GenerateChunk;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter !== null) return Promise.reject(new Error('GenerateStream: next() called again before the previous call resolved'));
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** Consumer leaves: aborts what is still running and ends the iterator. */
  return(): Promise<IteratorResult<GenerateChunk>> {
    this.cancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(err?: unknown): Promise<IteratorResult<GenerateChunk>> {
    this.cancel();
    return Promise.reject(err);
  }

  /** Aborts the request unless it already ended; pending chunks are dropped. */
  cancel(): void {
    this.queue = [];
    this.head = 0;
    if (this.ended) return;
    this.cancelled = true;
    this.onCancel();
    this.end();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
