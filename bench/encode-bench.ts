// Pooled-model serving speed over HTTP (part of `npm run bench:gpu`; runs on the CPU too): the server
// (LocalRuntime + the Fastify gateway, in this process) over an embedding model (`--is-embedding`) or a
// cross-encoder, on 127.0.0.1, with random token ids as inputs (`input_ids`, so tokenization is not timed).
//  1. latency: `--single` sequential requests of one `--len`-token input each: p50 / p99 end to end;
//  2. throughput: `--count` requests of `--len` tokens, all in flight at once (the scheduler batches them
//     under --max-prefill-tokens): requests/s and prompt tokens/s over the whole wave.
// Prints `ENC <name> single len <n> p50_ms <x> p99_ms <y>` and `ENC <name> batch <count> x <len> req_s <r> tok_s <t>`.
//
// Usage: node dist/bench/encode-bench.js --model DIR --name NAME [--embedding] [--len 500] [--count 512]
//        [--single 50] [--max-prefill-tokens 16384] [--device auto|cpu|cuda] [--no-overlap] [--warm-wave] [--same-thread]
//        [--burst] (the wave's 512 requests made in one synchronous loop, as before 2026-12-07; by default the
//        client issues them 8 at a time with an event-loop turn between, so the first ones go out at once)
//        [--timeline] (one `ENC-STEP` line per step of the measured wave: when its events reached JS, ms after the
//        wave started, its tokens and requests, and the native schedule / forward / sample / previous-loop times)
//        (--count 0: latency only; the client runs in a worker thread unless --same-thread)
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { runClient, type ClientJob, type ClientResult } from './encode-client.js';
import { ServingEngine } from '../src/engine/engine.js';
import type { StepTiming } from '../src/engine/engine-output.js';
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


async function main(): Promise<void> {
  // The forward time of each step (native), to split a request's latency into forward and the rest.
  const forwards: { us: number; tokens: number }[] = [];
  // --timeline: every step callback of the measured wave (forward-less ones too: events of an overlapped step)
  const timeline = process.argv.includes('--timeline');
  const steps: { atMs: number; t: StepTiming }[] = [];
  let waveT0 = 0;
  // engine-thread time outside the forward (schedule + reading the rows and posting), and the JS callbacks
  let hostUs = 0;
  let callbackUs = 0;
  const engine = await ServingEngine.create({
    onStepTiming: (t) => {
      if (t.numTokens > 0) forwards.push({ us: t.forwardUs, tokens: t.numTokens });
      if (timeline && waveT0 > 0) steps.push({ atMs: performance.now() - waveT0, t });
      hostUs += t.scheduleUs + t.sampleUs;
      callbackUs += t.callbackUs;
    },
    modelPath, isEmbedding, device, pageSize: 16, chunkedPrefillSize: maxPrefill, maxPrefillTokens: maxPrefill,
    maxRunningRequests: Math.max(count, 1), disableRadixCache: true, randomSeed: 1, disableOverlapSchedule: noOverlap,
  });
  // --timeline: when each request reached the engine (ms after the wave started)
  const submits: number[] = [];
  if (timeline) {
    const encode = engine.encode.bind(engine);
    engine.encode = (req) => {
      if (waveT0 > 0) submits.push(performance.now() - waveT0);
      return encode(req);
    };
  }
  const runtime = new LocalRuntime(engine, { modelPath, tokenizerPath: modelPath, servedModelName: name, serverArgs: buildServerArgs(engine, { modelPath }) });
  const app = createGateway(runtime);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  const info = engine.info;
  console.log(`# ${name}: ${info.architecture} (${info.poolingKind}) ${info.numLayers} layers on ${info.backend}, row width ${info.embeddingDim}`);
  const job: ClientJob = { base: `http://127.0.0.1:${addr.port}`, vocab: info.vocabSize, len, count, singles, warmWave: process.argv.includes('--warm-wave'), burst: process.argv.includes('--burst') };
  const tag = `${name}${noOverlap ? ' (no overlap)' : ''}`;
  const onResult = (r: ClientResult) => {
    if (r.kind === 'single') {
      const fwd = forwards.filter((f) => f.tokens === len).map((f) => f.us / 1000);
      console.log(`ENC ${tag} single len ${len} p50_ms ${pct(r.lat, 0.5).toFixed(2)} p99_ms ${pct(r.lat, 0.99).toFixed(2)} forward_p50_ms ${pct(fwd, 0.5).toFixed(2)} n ${r.lat.length}`);
    } else if (r.kind === 'wave-start') {
      forwards.length = 0;
      steps.length = 0;
      submits.length = 0;
      hostUs = callbackUs = 0;
      waveT0 = performance.now();
    } else if (r.kind === 'wave') {
      const fwdS = forwards.reduce((a, f) => a + f.us, 0) / 1e6;
      const fwdTok = forwards.reduce((a, f) => a + f.tokens, 0);
      console.log(`ENC ${tag} batch ${count} x ${len} req_s ${(count / r.s).toFixed(1)} tok_s ${((count * len) / r.s).toFixed(0)} forward_tok_s ${(fwdTok / fwdS).toFixed(0)} steps ${forwards.length} wall_s ${r.s.toFixed(3)} forward_s ${fwdS.toFixed(3)} engine_host_ms ${(hostUs / 1000).toFixed(1)} js_callbacks_ms ${(callbackUs / 1000).toFixed(1)}`);
      if (submits.length > 0) {
        const at = (i: number) => (submits[Math.min(submits.length - 1, i)] as number).toFixed(2);
        console.log(`ENC-SUBMITS n ${submits.length} first_ms ${at(0)} 32nd_ms ${at(31)} 128th_ms ${at(127)} 256th_ms ${at(255)} last_ms ${at(submits.length - 1)}`);
      }
      for (const { atMs, t } of steps) {
        console.log(`ENC-STEP at_ms ${atMs.toFixed(2)} tokens ${t.numTokens} reqs ${t.batchSize} events ${t.events} schedule_us ${t.scheduleUs.toFixed(0)} forward_us ${t.forwardUs.toFixed(0)} sample_us ${t.sampleUs.toFixed(0)} prev_loop_us ${t.prevLoopUs.toFixed(0)}`);
      }
      waveT0 = 0;
    }
  };
  try {
    forwards.length = 0;
    if (process.argv.includes('--same-thread')) {
      await runClient(job, onResult);
    } else {
      const worker = new Worker(fileURLToPath(new URL('./encode-client.js', import.meta.url)), { workerData: job });
      await new Promise<void>((resolve, reject) => {
        worker.on('message', (r: ClientResult) => (r.kind === 'done' ? resolve() : onResult(r)));
        worker.on('error', reject);
        worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`client thread exited with ${code}`))));
      });
      await worker.terminate();
    }
  } finally {
    await app.close();
    await runtime.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
