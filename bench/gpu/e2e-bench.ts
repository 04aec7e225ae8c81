// End-to-end engine speed on the GPU (part of `npm run bench:gpu`): the native engine (scheduler, CUDA
// forward, sampling) on a random-weight model of a real shape, without the HTTP front.
//  - decode: B requests with `ctx`-token random prompts and `out` output tokens each, all submitted at once;
//    tokens/s over the steps that only decode (every running request one token), counting each step's
//    whole engine-loop time (schedule + forward + sample + posting), and the forward alone, after an unmeasured
//    round of the same shape (graph captures); p50_tok_s is B over the median step (robust to a slow step).
//    The first all-decode step of each round is left out: under the overlap schedule its wait is for the
//    step launched before it, the prefill of the round's last prompts (B 64 on Qwen1.5-MoE: ~90 ms against
//    ~18 ms for the others, H200, 2026-12-06), which is not decode time;
//  - prefill: one prompt of `prefill` tokens (one chunk: chunked prefill set to it), on an idle engine:
//    tok_s from the step's forward time where the step reports it (not under the overlap schedule, whose
//    step that ends a 1-token request launches nothing and so reports no batch), and ttft_tok_s from the
//    wall time between submit and the request's finish (schedule, forward, sampling and posting).
// Prints `E2E <name> decode B <b> ctx <c> tok_s <x> forward_tok_s <y> ...` and
// `E2E <name> prefill <n> tok_s <x> ttft_tok_s <y> ttft_ms <z>`.
//
// Usage: node dist/bench/gpu/e2e-bench.js --model DIR --name NAME [--batches 1,8,64,256] [--ctx 1024]
//        [--out 128] [--prefill 4096] [--no-graph] [--no-overlap] [--temperature T] [--top-k K] [--top-p P] [--min-p P]
//        [--repetition-penalty R] (a filter or a penalty takes the rows off the whole-vocabulary path)
//        [--expert-record MODE] (MoE models: launch with the expert distribution recorder in MODE and record
//        through every measured round, to measure what recording costs)
import { loadAddon, type NativeEngine, type NativeStepOutput } from '../../src/native/addon.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const modelPath = arg('model', '');
const name = arg('name', 'model');
const device = arg('device', 'cuda') as 'cpu' | 'cuda'; // cpu: a smoke run of the bench itself on a tiny model
const batches = arg('batches', '1,8,64,256').split(',').map(Number);
const ctx = Number(arg('ctx', '1024'));
const outLen = Number(arg('out', '128'));
const prefill = Number(arg('prefill', '4096'));
const noGraph = process.argv.includes('--no-graph'); // every step eager (to measure what the graphs save)
const noOverlap = process.argv.includes('--no-overlap'); // --disable-overlap-schedule (to measure what overlap saves)
const temperature = Number(arg('temperature', '0')); // 0: greedy; > 0: sampled (on the GPU: whole-vocabulary sampling)
const topK = Number(arg('top-k', '-1'));
const topP = Number(arg('top-p', '1'));
const minP = Number(arg('min-p', '0'));
const repetitionPenalty = Number(arg('repetition-penalty', '1'));
const expertRecord = arg('expert-record', ''); // '' (off), stat, stat_approx, per_pass or per_token
const filtered = topK > 0 || topP < 1 || minP > 0 || repetitionPenalty !== 1;
const label = `${noGraph ? ' (no graphs)' : ''}${noOverlap ? ' (no overlap)' : ''}${process.env.SGL_PDL === '1' ? ' (PDL)' : ''}${expertRecord ? ` (record ${expertRecord})` : ''}${temperature > 0 ? ` (sampled, T ${temperature}${filtered ? `, top_k ${topK}, top_p ${topP}, min_p ${minP}, rep ${repetitionPenalty}` : ''})` : ''}`;
if (!modelPath) throw new Error('--model DIR is required');

function randomPrompt(vocab: number, n: number, seed: number): Int32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = 3 + (s % (vocab - 3));
  }
  return a;
}

interface Step { loopUs: number; forwardUs: number; scheduleUs: number; sampleUs: number; batchSize: number; numTokens: number }

class Bench {
  engine: NativeEngine;
  vocab: number;
  steps: Step[] = [];
  prefillForwardUs = NaN; // forward time of the last step that ran exactly `prefill` tokens
  private prev: NativeStepOutput | null = null;
  private waiting = new Map<number, () => void>();

  constructor(maxRunning: number, chunk: number) {
    this.engine = new (loadAddon().NativeEngine)({
      modelPath, numPages: device === 'cpu' ? 4096 : 0, pageSize: 16, device, chunkedPrefillSize: chunk, maxPrefillTokens: Math.max(chunk, 16384),
      maxRunningRequests: maxRunning, disableRadixCache: true, disableCudaGraph: noGraph, disableOverlapSchedule: noOverlap, schedulePolicy: 'fcfs', randomSeed: 1,
      ...(expertRecord ? { expertDistributionRecorderMode: expertRecord } : {}),
      onStep: (o) => this.onStep(o),
    });
    this.vocab = this.engine.info().vocabSize;
  }

  private onStep(o: NativeStepOutput): void {
    if (o.numTokens === prefill) this.prefillForwardUs = o.forwardUs;
    if (this.prev && o.prevLoopUs > 0) this.steps.push({ loopUs: o.prevLoopUs, forwardUs: this.prev.forwardUs, scheduleUs: this.prev.scheduleUs, sampleUs: this.prev.sampleUs, batchSize: this.prev.batchSize, numTokens: this.prev.numTokens });
    this.prev = o;
    for (let i = 0; i < o.n; i++) if (o.finish[i] !== 0) this.waiting.get(o.rid[i]!)?.();
  }

  run(rid: number, prompt: Int32Array, maxNew: number): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.set(rid, resolve);
      this.engine.submit({
        rid, inputIds: prompt, maxNewTokens: maxNew, minNewTokens: 0, temperature, topP, topK, minP,
        frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty, ignoreEos: true, stopTokenIds: new Int32Array(0),
        seed: null, returnLogprob: false, topLogprobsNum: 0, tokenIdsLogprob: null, logprobStartLen: -1,
      });
    });
  }
}

// One measured round: B requests at once; returns the steps that only decode B rows, less the first of them
// (its wait covers the prefill launched before it under the overlap schedule: see the header).
async function decodeRound(bench: Bench, B: number, seed: number, rid: { next: number }): Promise<Step[]> {
  bench.steps = [];
  await Promise.all(Array.from({ length: B }, (_, i) => bench.run(rid.next++, randomPrompt(bench.vocab, ctx, seed * 7919 + i), outLen)));
  return bench.steps.filter((s) => s.batchSize === B && s.numTokens === B).slice(1);
}

function report(tag: string, B: number, decode: Step[]): void {
  const tokens = decode.reduce((a, s) => a + s.batchSize, 0);
  const loopS = decode.reduce((a, s) => a + s.loopUs, 0) / 1e6;
  const fwdS = decode.reduce((a, s) => a + s.forwardUs, 0) / 1e6;
  const mean = (f: (s: Step) => number) => (decode.reduce((a, s) => a + f(s), 0) / Math.max(1, decode.length)).toFixed(0);
  const v = decode.map((s) => s.loopUs).sort((x, y) => x - y);
  const p50 = v.length ? v[Math.floor(v.length / 2)]! : NaN;
  // the step times in order (a slow step's place says what it is: the first decode step, a capture, ...)
  console.log(`# ${name}${tag} B ${B} us_loop/us_forward per step: ${decode.map((s) => `${s.loopUs.toFixed(0)}/${s.forwardUs.toFixed(0)}`).join(' ')}`);
  console.log(`E2E ${name}${tag} decode B ${B} ctx ${ctx} tok_s ${(tokens / loopS).toFixed(0)} forward_tok_s ${(tokens / fwdS).toFixed(0)} p50_tok_s ${(B / (p50 / 1e6)).toFixed(0)} steps ${decode.length} us_loop ${mean((s) => s.loopUs)} us_forward ${mean((s) => s.forwardUs)} us_schedule ${mean((s) => s.scheduleUs)} us_sample ${mean((s) => s.sampleUs)}`);
}

async function main(): Promise<void> {
  const maxB = Math.max(...batches);
  const bench = new Bench(maxB, Math.max(8192, prefill));
  const info = bench.engine.info();
  console.log(`# ${name}: ${info.architecture} ${info.numLayers} layers on ${info.backend}, KV pool ${info.numPages * info.pageSize} tokens`);
  const rec = bench.engine;
  // With --expert-record the same engine alternates rounds without and with recording (off, on, off, on), so
  // that both sides see the same warm state; each side's line pools its two rounds.
  const variants: Array<'plain' | 'off' | 'on'> = expertRecord ? ['off', 'on', 'off', 'on'] : ['plain'];
  const tagOf = (v: 'plain' | 'off' | 'on') => (v === 'plain' ? label : `${label.replace(` (record ${expertRecord})`, '')} (record ${v === 'on' ? expertRecord : 'off'})`);
  const rid = { next: 1 };
  await bench.run(rid.next++, randomPrompt(bench.vocab, 64, 99), 8); // warm-up
  let seed = 1;
  for (const B of batches) {
    // A first round of the same shape (of each variant) captures the CUDA graphs of this batch size and
    // context bucket and sizes the buffers, so that no capture (milliseconds) lands in the measured steps.
    for (const v of new Set(variants)) {
      if (v === 'on') await rec.expertRecord('start');
      await decodeRound(bench, B, seed++, rid);
      if (v === 'on') await rec.expertRecord('stop');
    }
    const steps = new Map<string, Step[]>();
    for (const v of variants) {
      if (v === 'on') await rec.expertRecord('start');
      const d = await decodeRound(bench, B, seed++, rid);
      if (v === 'on') await rec.expertRecord('stop');
      steps.set(v, [...(steps.get(v) ?? []), ...d]);
    }
    for (const [v, d] of steps) report(tagOf(v as 'plain' | 'off' | 'on'), B, d);
  }
  for (const v of new Set(variants)) {
    if (v === 'on') await rec.expertRecord('start');
    for (let rep = 0; rep < 2; rep++) {
      bench.steps = [];
      bench.prefillForwardUs = NaN;
      const t0 = performance.now();
      await bench.run(rid.next++, randomPrompt(bench.vocab, prefill, 1000 + seed++), 1);
      const ttftMs = performance.now() - t0;
      if (rep === 1) console.log(`E2E ${name}${tagOf(v)} prefill ${prefill} tok_s ${(prefill / (bench.prefillForwardUs / 1e6)).toFixed(0)} ttft_tok_s ${(prefill / (ttftMs / 1e3)).toFixed(0)} ttft_ms ${ttftMs.toFixed(2)}`);
    }
    if (v === 'on') await rec.expertRecord('stop');
  }
  if (expertRecord) {
    const d = await rec.expertRecord('dump');
    const total = d.logicalCount.reduce((a, x) => a + x, 0);
    console.log(`# expert record ${d.mode}: ${d.numPasses} passes, ${total} (token, expert) choices counted over ${d.numLayers} layers`);
  }
  await bench.engine.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
