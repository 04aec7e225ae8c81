// Pooled-model serving speed over HTTP (part of `npm run bench:gpu`; runs on the CPU too): the server
// (LocalRuntime + the Fastify gateway, in this process) over an embedding model (`--is-embedding`) or a
// cross-encoder, on 127.0.0.1, with random token ids as inputs (`input_ids`, so tokenization is not timed).
//  1. latency: `--single` sequential requests of one `--len`-token input each: p50 / p99 end to end;
//  2. throughput: `--count` requests of `--len` tokens, all in flight at once (the scheduler batches them
//     under --max-prefill-tokens): requests/s and prompt tokens/s over the whole wave.
// Prints `ENC <name> single len <n> p50_ms <x> p99_ms <y>` and `ENC <name> batch <count> x <len> req_s <r> tok_s <t>`.
//
// Usage: node dist/bench/encode-bench.js --model DIR --name NAME [--embedding] [--len 500] [--count 512]
//        [--single 50] [--max-prefill-tokens 16384] [--device auto|cpu|cuda] [--no-overlap] [--warm-wave] (--count 0: latency only)
import http from 'node:http';
import { ServingEngine } from '../src/engine/engine.js';
import { createGateway } from '../src/http/gateway.js';
import { buildServerArgs, LocalRuntime } from '../src/runtime/local-runtime.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const modelPath = arg('model', '');
const name = arg('name', 'model');
const isEmbedding = process.argv.includes('--embedding');
const len = Number(arg('len', '500'));
const count = Number(arg('count', '512'));
const singles = Number(arg('single', '50'));
const maxPrefill = Number(arg('max-prefill-tokens', '16384'));
const device = arg('device', 'auto') as 'auto' | 'cpu' | 'cuda';
// --no-overlap: --disable-overlap-schedule; then each step's timing carries its own forward (with overlap a
// pooled step's event comes out of the next, forward-less loop iteration), so forward_p50_ms is reported.
const noOverlap = process.argv.includes('--no-overlap');
if (!modelPath) throw new Error('--model DIR is required');

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN;
};

function randomIds(vocab: number, n: number, seed: number): number[] {
  let s = (seed * 2654435761) >>> 0 || 1;
  const a: number[] = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a.push(5 + (s % (vocab - 5)));
  }
  return a;
}

async function main(): Promise<void> {
  // The forward time of each step (native), to split a request's latency into forward and the rest.
  const forwards: { us: number; tokens: number }[] = [];
  const engine = await ServingEngine.create({
    onStepTiming: (t) => {
      if (t.numTokens > 0) forwards.push({ us: t.forwardUs, tokens: t.numTokens });
    },
    modelPath, isEmbedding, device, pageSize: 16, chunkedPrefillSize: maxPrefill, maxPrefillTokens: maxPrefill,
    maxRunningRequests: Math.max(count, 1), disableRadixCache: true, randomSeed: 1, disableOverlapSchedule: noOverlap,
  });
  const runtime = new LocalRuntime(engine, { modelPath, tokenizerPath: modelPath, servedModelName: name, serverArgs: buildServerArgs(engine, { modelPath }) });
  const app = createGateway(runtime);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  const base = `http://127.0.0.1:${addr.port}`;
  const info = engine.info;
  console.log(`# ${name}: ${info.architecture} (${info.poolingKind}) ${info.numLayers} layers on ${info.backend}, row width ${info.embeddingDim}`);
  const vocab = info.vocabSize;
  // node:http with keep-alive sockets, as a serving client would hold them (fetch costs ~0.5 ms more per
  // request in this process: bench/encode-probe.ts).
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const encode = (ids: number[]) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({ input_ids: ids });
      const req = http.request(`${base}/encode`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`/encode answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  try {
    for (let i = 0; i < 3; i++) await encode(randomIds(vocab, len, 1000 + i)); // warm-up
    const lat: number[] = [];
    forwards.length = 0;
    for (let i = 0; i < singles; i++) {
      const ids = randomIds(vocab, len, i + 1);
      const t0 = performance.now();
      await encode(ids);
      lat.push(performance.now() - t0);
    }
    const fwd = forwards.filter((f) => f.tokens === len).map((f) => f.us / 1000);
    console.log(`ENC ${name}${noOverlap ? ' (no overlap)' : ''} single len ${len} p50_ms ${pct(lat, 0.5).toFixed(2)} p99_ms ${pct(lat, 0.99).toFixed(2)} forward_p50_ms ${pct(fwd, 0.5).toFixed(2)} n ${lat.length}`);
    if (count <= 0) return;
    const inputs = Array.from({ length: count }, (_, i) => randomIds(vocab, len, 50_000 + i));
    await Promise.all(inputs.slice(0, Math.min(count, 32)).map(encode)); // warm the batched shapes
    // --warm-wave: one unmeasured wave first (every step size the wave makes has been seen once: cuBLASLt
    // plans, SGL_GEMM_TUNE's timing of a new token-count bucket)
    if (process.argv.includes('--warm-wave')) await Promise.all(inputs.map(encode));
    forwards.length = 0;
    const t0 = performance.now();
    await Promise.all(inputs.map(encode));
    const s = (performance.now() - t0) / 1000;
    const fwdS = forwards.reduce((a, f) => a + f.us, 0) / 1e6;
    const fwdTok = forwards.reduce((a, f) => a + f.tokens, 0);
    console.log(`ENC ${name}${noOverlap ? ' (no overlap)' : ''} batch ${count} x ${len} req_s ${(count / s).toFixed(1)} tok_s ${((count * len) / s).toFixed(0)} forward_tok_s ${(fwdTok / fwdS).toFixed(0)} steps ${forwards.length} wall_s ${s.toFixed(3)}`);
  } finally {
    agent.destroy();
    await app.close();
    await runtime.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
