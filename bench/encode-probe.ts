// Where the time of one pooled request goes beside the forward (a companion of encode-bench.ts; CPU or GPU):
// p50 of (a) ServingEngine.encode() alone, (b) /encode over HTTP with node:http and a keep-alive agent,
// (c) /encode over HTTP with fetch (what encode-bench.ts used), all in this process, with the native
// forward's p50 beside. Prints `PROBE <name> len <n> forward_ms <f> engine_ms <a> http_ms <b> fetch_ms <c>`.
// Usage: node dist/bench/encode-probe.js --model DIR --name NAME [--embedding] [--len 500] [--n 100] [--device auto|cpu|cuda]
//        [--no-prune] (every layer on all tokens: pruneLastLayer false)
//        [--overlap] (the overlap schedule, the server's default; without it --disable-overlap-schedule. A lone pooled
//        request is read in the step that ran it either way since 2026-12-07, so forward_ms is reported for both)
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
const len = Number(arg('len', '500'));
const n = Number(arg('n', '100'));
const device = arg('device', 'auto') as 'auto' | 'cpu' | 'cuda';
const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  const forwards: number[] = [];
  const engine = await ServingEngine.create({
    onStepTiming: (t) => {
      if (t.numTokens === len) forwards.push(t.forwardUs / 1000);
    },
    modelPath, isEmbedding: process.argv.includes('--embedding'), device, pageSize: 16, chunkedPrefillSize: 16384,
    maxPrefillTokens: 16384, maxRunningRequests: 8, disableRadixCache: true, randomSeed: 1, disableOverlapSchedule: !process.argv.includes('--overlap'),
    pruneLastLayer: !process.argv.includes('--no-prune'),
  });
  const runtime = new LocalRuntime(engine, { modelPath, tokenizerPath: modelPath, servedModelName: name, serverArgs: buildServerArgs(engine, { modelPath }) });
  const app = createGateway(runtime);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const ids = (seed: number) => Array.from({ length: len }, (_, i) => 5 + ((seed * 7919 + i * 104729) % (engine.info.vocabSize - 5)));
  const viaHttp = (body: string) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/encode', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.on('data', () => {});
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  const viaFetch = async (body: string) => {
    const r = await fetch(`http://127.0.0.1:${port}/encode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    await r.arrayBuffer();
  };
  const time = async (f: (i: number) => Promise<unknown>) => {
    for (let i = 0; i < 5; i++) await f(i);
    const t: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await f(i);
      t.push(performance.now() - t0);
    }
    return p50(t);
  };
  try {
    forwards.length = 0;
    const a = await time((i) => engine.encode({ inputIds: ids(i) }));
    const fwd = p50(forwards);
    const b = await time((i) => viaHttp(JSON.stringify({ input_ids: ids(i) })));
    const c = await time((i) => viaFetch(JSON.stringify({ input_ids: ids(i) })));
    console.log(`PROBE ${name} len ${len} forward_ms ${fwd.toFixed(2)} engine_ms ${a.toFixed(2)} http_ms ${b.toFixed(2)} fetch_ms ${c.toFixed(2)}`);
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
