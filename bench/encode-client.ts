// The load generator of bench/encode-bench.ts: /encode requests of random token ids over node:http, run in a
// worker thread of the bench (its own event loop and heap, as a client in another process would have) or,
// with --same-thread, on the server's thread.
import http from 'node:http';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';

// The client: its own thread (event loop and heap), as a load generator in another process would be, so that
// building 512 request bodies and reading 512 responses does not queue behind the server's own JSON work on
// one event loop. --same-thread keeps it on the server's thread (what this bench measured before 2026-12-07).
export interface ClientJob { base: string; vocab: number; len: number; count: number; singles: number; warmWave: boolean; burst: boolean }
export type ClientResult = { kind: 'single'; lat: number[] } | { kind: 'wave-start' } | { kind: 'wave'; s: number } | { kind: 'done' };

export async function runClient(job: ClientJob, report: (r: ClientResult) => void): Promise<void> {
  // node:http with keep-alive sockets, as a serving client would hold them (fetch costs ~0.5 ms more per
  // request: bench/encode-probe.ts).
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const encode = (ids: number[]) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({ input_ids: ids });
      const req = http.request(`${job.base}/encode`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`/encode answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  try {
    for (let i = 0; i < 3; i++) await encode(randomIds(job.vocab, job.len, 1000 + i)); // warm-up
    const lat: number[] = [];
    for (let i = 0; i < job.singles; i++) {
      const ids = randomIds(job.vocab, job.len, i + 1);
      const t0 = performance.now();
      await encode(ids);
      lat.push(performance.now() - t0);
    }
    report({ kind: 'single', lat });
    if (job.count <= 0) return;
    const inputs = Array.from({ length: job.count }, (_, i) => randomIds(job.vocab, job.len, 50_000 + i));
    await Promise.all(inputs.slice(0, Math.min(job.count, 32)).map(encode)); // warm the batched shapes
    // --warm-wave: one unmeasured wave first (every step size the wave makes has been seen once: cuBLASLt
    // plans, SGL_GEMM_TUNE's timing of a new token-count bucket)
    if (job.warmWave) await Promise.all(inputs.map(encode));
    report({ kind: 'wave-start' });
    const t0 = performance.now();
    await Promise.all(job.burst ? inputs.map(encode) : await issueInSlices(inputs, encode));
    report({ kind: 'wave', s: (performance.now() - t0) / 1000 });
  } finally {
    agent.destroy();
    report({ kind: 'done' });
  }
}

// The wave's requests, issued SLICE at a time with a turn of the event loop between slices: node:http writes a
// request's bytes only after the synchronous code that made it returns, so issuing all 512 in one loop held
// the first byte back until every request object existed (~40 ms of client time with the GPU idle: the step
// timeline of 2026-12-07). --burst keeps that all-at-once issue.
const SLICE = 8;
async function issueInSlices(inputs: number[][], encode: (ids: number[]) => Promise<void>): Promise<Promise<void>[]> {
  const pending: Promise<void>[] = [];
  for (let i = 0; i < inputs.length; i += SLICE) {
    if (i > 0) await new Promise<void>((r) => setImmediate(r));
    for (const ids of inputs.slice(i, i + SLICE)) pending.push(encode(ids));
  }
  return pending;
}

function randomIds(vocab: number, n: number, seed: number): number[] {
  let s = (seed * 2654435761) >>> 0 || 1;
  const a: number[] = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a.push(5 + (s % (vocab - 5)));
  }
  return a;
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  runClient(workerData as ClientJob, (r) => port.postMessage(r)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
