/** Free list of KV page ids, [0, numPages). The native engine (issue 3) has its own; this one serves the
 * TypeScript step runner used by the CLI and tests before the engine thread exists. */
export class PagePool {
  private free: number[];
  constructor(readonly numPages: number) {
    this.free = Array.from({ length: numPages }, (_, i) => numPages - 1 - i);
  }
  get available(): number {
    return this.free.length;
  }
  alloc(n: number): number[] {
    if (n > this.free.length) throw new Error(`KV pool exhausted: need ${n} pages, ${this.free.length} free`);
    return this.free.splice(this.free.length - n, n).reverse();
  }
  release(pages: number[]): void {
    this.free.push(...pages);
  }
}
