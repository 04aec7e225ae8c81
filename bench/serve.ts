// `npm run bench:serve`: the server under load from a second process on loopback (this process is the
// client; the server is `node dist/src/cli/main.js` in a child process, stories260k, CPU).
//  1. /generate with max_new_tokens 1: requests/s and p50 / p99 latency, REST vs gRPC, 16 in flight.
//  2. Streaming: time to first token and inter-token latency at 1, 16 and 128 concurrent streams (REST SSE).
// Bounded: a fixed number of requests per measurement and a 60 s cap on each.
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../src/native/addon.js';
import { RemoteRuntime } from '../src/runtime/remote-runtime.js';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};

async function closedLoop(count: number, inFlight: number, one: (i: number) => Promise<void>): Promise<{ rps: number; lat: number[] }> {
  const lat: number[] = [];
  let next = 0;
  const deadline = performance.now() + 60_000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count && performance.now() < deadline) {
        const i = next++;
        const s = performance.now();
        await one(i);
        lat.push(performance.now() - s);
      }
    }),
  );
  return { rps: lat.length / ((performance.now() - t0) / 1000), lat };
}

async function streamLatency(base: string, streams: number): Promise<{ ttft: number[]; itl: number[] }> {
  const ttft: number[] = [];
  const itl: number[] = [];
  await Promise.all(
    Array.from({ length: streams }, async (_, i) => {
      const t0 = performance.now();
      const r = await fetch(`${base}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: `Once upon a time ${i}`, stream: true, sampling_params: { max_new_tokens: 32, temperature: 0, ignore_eos: true } }),
      });
      const reader = r.body!.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let first = -1;
      let last = -1;
      let firstIds = 0;
      let lastIds = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let k: number;
        while ((k = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, k);
          buf = buf.slice(k + 2);
          if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
          const now = performance.now();
          const ids = (JSON.parse(ev.slice(6)) as { output_ids: number[] }).output_ids.length;
          if (first < 0) {
            ttft.push(now - t0);
            first = now;
            firstIds = ids;
          }
          last = now;
          lastIds = ids;
        }
      }
      // Mean inter-token latency of the stream: time from the first chunk to the last over the tokens that
      // came after the first chunk. (Several SSE events can arrive in one read, so per-event gaps read as 0.)
      if (lastIds > firstIds) itl.push((last - first) / (lastIds - firstIds));
    }),
  );
  return { ttft, itl };
}

const httpPort = await freePort();
const grpcPort = await freePort();
const child = spawn(process.execPath, [path.join(projectRoot(), 'dist', 'src', 'cli', 'main.js'), '--port', String(httpPort), '--grpc-port', String(grpcPort), '--page-size', '16', '--max-running-requests', '128', '--max-total-tokens', '32768'], { stdio: ['ignore', 'ignore', 'pipe'] });
await new Promise<void>((resolve, reject) => {
  child.stderr!.on('data', (d: Buffer) => {
    if (d.toString().includes('ready to roll')) resolve();
  });
  child.on('exit', (c) => reject(new Error(`server exited (${c})`)));
});
const base = `http://127.0.0.1:${httpPort}`;
const rows: string[][] = [];
try {
  const body = (i: number) => ({ text: `Hello ${i}`, sampling_params: { max_new_tokens: 1, temperature: 0 } });
  await closedLoop(50, 8, async (i) => void (await (await fetch(`${base}/generate`, { method: 'POST', body: JSON.stringify(body(i)), headers: { 'content-type': 'application/json' } })).json())); // warm-up
  const rest = await closedLoop(1000, 16, async (i) => {
    const r = await fetch(`${base}/generate`, { method: 'POST', body: JSON.stringify(body(i)), headers: { 'content-type': 'application/json' } });
    await r.json();
  });
  const remote = new RemoteRuntime(`127.0.0.1:${grpcPort}`);
  const grpcOne = async (i: number) => {
    const { items } = await remote.generate(body(i));
    for await (const _ of items) void _;
  };
  await closedLoop(50, 8, grpcOne);
  const grpc = await closedLoop(1000, 16, grpcOne);
  await remote.close();
  for (const [name, m] of [['REST', rest], ['gRPC', grpc]] as const) {
    rows.push([`/generate max_new_tokens 1, ${name}, 16 in flight`, `${m.rps.toFixed(0)} req/s`, `p50 ${pct(m.lat, 0.5).toFixed(2)} ms, p99 ${pct(m.lat, 0.99).toFixed(2)} ms (${m.lat.length} requests)`]);
  }
  for (const n of [1, 16, 128]) {
    const s = await streamLatency(base, n);
    rows.push([`streaming, ${n} concurrent (32 tokens each)`, `TTFT p50 ${pct(s.ttft, 0.5).toFixed(2)} ms, p99 ${pct(s.ttft, 0.99).toFixed(2)} ms`, `mean ITL per stream: p50 ${pct(s.itl, 0.5).toFixed(2)} ms, p99 ${pct(s.itl, 0.99).toFixed(2)} ms`]);
  }
} finally {
  child.kill('SIGTERM');
}
console.log(`machine: ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length} threads; server: stories260k, page size 16, separate process on loopback`);
console.log('| measure | throughput / TTFT | latency / ITL |\n|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
