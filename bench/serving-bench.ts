// `npm run bench`: serving throughput of the native engine on the CPU (offline, no server): 64 requests
// (random 128-token prompts, 64 output tokens each, greedy, ignore_eos) submitted at once, against the
// same kind of requests run one at a time; and, at 64 running requests, how each engine step's wall time
// splits between the model forward and everything else (scheduling + sampling + posting the step to JS),
// and the JS-side cost of the step callback through the TypeScript front. Models: stories260k and the random Qwen2.5-0.5B-shape model.
//
// Usage: node dist/bench/serving-bench.js [--quick]   (--quick: stories260k only)
import os from 'node:os';
import path from 'node:path';
import { loadAddon, projectRoot } from '../src/native/addon.js';
import type { NativeEngine, NativeStepOutput } from '../src/native/addon.js';
import { builtinModelDir } from '../src/engine/builtin-model.js';
import { ServingEngine } from '../src/engine/engine.js';
import type { StepTiming } from '../src/engine/engine.js';
import { ensureRandomModel } from './random-model.js';

const PROMPT = 128;
const OUTPUT = 64;
const CONCURRENT = 64;

interface StepSample {
  loopUs: number; // the native loop iteration of the previous step, whole (commands .. posting to JS)
  forwardUs: number; // the previous step's forward
  scheduleUs: number;
  sampleUs: number;
  callbackUs: number; // JS time spent dispatching this step's events
  batchSize: number;
  numTokens: number;
}

interface RunResult {
  seconds: number;
  outputTokens: number;
  steps: StepSample[];
}

function randomPrompt(vocab: number, n: number, seed: number): Int32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = 3 + (s % (vocab - 3)); // skip the usual special ids
  }
  return out;
}

class BenchEngine {
  readonly engine: NativeEngine;
  readonly vocab: number;
  private readonly waiters = new Map<number, { tokens: number[]; resolve: (t: number[]) => void }>();
  private prev: NativeStepOutput | null = null;
  recording = false;
  steps: StepSample[] = [];

  constructor(modelPath: string, numPages: number, pageSize: number) {
    const addon = loadAddon();
    this.engine = new addon.NativeEngine({
      modelPath,
      numPages,
      pageSize,
      chunkedPrefillSize: 8192,
      maxPrefillTokens: 16384,
      maxRunningRequests: CONCURRENT,
      disableRadixCache: false,
      schedulePolicy: 'fcfs',
      randomSeed: 1,
      onStep: (out) => this.onStep(out),
    });
    this.vocab = this.engine.info().vocabSize;
  }

  // The same per-event work a front end does: route each event to its request, keep tokens, settle finishes.
  private onStep(out: NativeStepOutput): void {
    const t0 = performance.now();
    for (let i = 0; i < out.n; i++) {
      const w = this.waiters.get(out.rid[i]!);
      if (!w) continue;
      if (out.token[i]! >= 0) w.tokens.push(out.token[i]!);
      if (out.finish[i] !== 0) {
        this.waiters.delete(out.rid[i]!);
        w.resolve(w.tokens);
      }
    }
    const t1 = performance.now();
    const prev = this.prev;
    if (this.recording && prev && out.prevLoopUs > 0) {
      this.steps.push({
        loopUs: out.prevLoopUs,
        forwardUs: prev.forwardUs,
        scheduleUs: prev.scheduleUs,
        sampleUs: prev.sampleUs,
        callbackUs: (t1 - t0) * 1000,
        batchSize: prev.batchSize,
        numTokens: prev.numTokens,
      });
    }
    this.prev = out;
  }

  generate(rid: number, prompt: Int32Array, maxNewTokens: number): Promise<number[]> {
    return new Promise((resolve) => {
      this.waiters.set(rid, { tokens: [], resolve });
      this.engine.submit({
        rid, inputIds: prompt, maxNewTokens, minNewTokens: 0, temperature: 1, topP: 1, topK: 1, minP: 0,
        frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, ignoreEos: true, stopTokenIds: new Int32Array(0),
        seed: null, returnLogprob: false, topLogprobsNum: 0, tokenIdsLogprob: null, logprobStartLen: -1,
      });
    });
  }

  async run(prompts: Int32Array[], concurrent: boolean, ridBase: number): Promise<RunResult> {
    this.steps = [];
    this.recording = concurrent;
    this.prev = null;
    const t0 = performance.now();
    let outputTokens = 0;
    if (concurrent) {
      const outs = await Promise.all(prompts.map((p, i) => this.generate(ridBase + i, p, OUTPUT)));
      for (const o of outs) outputTokens += o.length;
    } else {
      for (let i = 0; i < prompts.length; i++) outputTokens += (await this.generate(ridBase + i, prompts[i]!, OUTPUT)).length;
    }
    this.recording = false;
    const seconds = (performance.now() - t0) / 1000;
    await this.engine.flushCache(); // the next run starts cold (random prompts share nothing anyway)
    return { seconds, outputTokens, steps: this.steps };
  }
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1]! : NaN;
};

async function benchModel(name: string, dir: string, sequentialCount: number): Promise<string[][]> {
  const pageSize = 16;
  const tokensNeeded = CONCURRENT * (PROMPT + OUTPUT + pageSize);
  const eng = new BenchEngine(dir, Math.ceil(tokensNeeded / pageSize) + 64, pageSize);
  const prompts = Array.from({ length: CONCURRENT }, (_, i) => randomPrompt(eng.vocab, PROMPT, i + 1));
  await eng.run(prompts.slice(0, 2), true, 1_000_000); // warm-up (thread pool, page faults of the weights)
  const conc = await eng.run(prompts, true, 0);
  const seq = await eng.run(prompts.slice(0, sequentialCount), false, 10_000);
  await eng.engine.close();

  // Steady decode steps with all 64 requests running.
  const full = conc.steps.filter((s) => s.batchSize === CONCURRENT && s.numTokens === CONCURRENT);
  const loop = median(full.map((s) => s.loopUs));
  const forward = median(full.map((s) => s.forwardUs));
  const outside = median(full.map((s) => s.loopUs - s.forwardUs));
  const sched = mean(full.map((s) => s.scheduleUs));
  const sample = mean(full.map((s) => s.sampleUs));
  const concTps = conc.outputTokens / conc.seconds;
  const seqTps = seq.outputTokens / seq.seconds;
  const pct = (x: number) => `${((100 * x) / loop).toFixed(1)}%`;
  return [
    [name, `64 at once: output tokens/s`, `${concTps.toFixed(0)} (${conc.outputTokens} tokens in ${conc.seconds.toFixed(2)} s)`],
    [name, `one at a time (${sequentialCount} requests): output tokens/s`, `${seqTps.toFixed(1)} (batching: ${(concTps / seqTps).toFixed(1)}×)`],
    [name, `engine step at 64 running (median of ${full.length})`, `${(loop / 1000).toFixed(3)} ms, of which forward ${(forward / 1000).toFixed(3)} ms`],
    [name, 'step time outside the forward', `${outside.toFixed(0)} µs = ${pct(outside)} of the step`],
    [name, '  scheduling / sampling (mean)', `${sched.toFixed(0)} µs (${pct(sched)}) / ${sample.toFixed(0)} µs (${pct(sample)})`],
  ];
}

// The same 64 requests through the TypeScript front (detokenization, stop matching, chunk queues): the JS
// callback per step, which runs on the JS thread beside the engine's next step.
async function benchFront(): Promise<string[][]> {
  const samples: StepTiming[] = [];
  const eng = await ServingEngine.create({ pageSize: 16, maxTotalTokens: CONCURRENT * (PROMPT + OUTPUT + 16) + 1024, maxRunningRequests: CONCURRENT, randomSeed: 1, onStepTiming: (t) => samples.push(t) });
  const V = eng.info.vocabSize;
  const run = async (count: number) => {
    const t0 = performance.now();
    const outs = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        eng.generateAll({ inputIds: Array.from(randomPrompt(V, PROMPT, i + 1)), samplingParams: { max_new_tokens: OUTPUT, temperature: 0, ignore_eos: true } }),
      ),
    );
    return { seconds: (performance.now() - t0) / 1000, tokens: outs.reduce((a, o) => a + o[0]!.completionTokens, 0) };
  };
  await run(2);
  samples.length = 0;
  const r = await run(CONCURRENT);
  await eng.close();
  const full = samples.filter((s) => s.batchSize === CONCURRENT && s.numTokens === CONCURRENT);
  const cb = median(full.map((s) => s.callbackUs));
  const loop = median(full.map((s) => s.prevLoopUs).filter((x) => x > 0));
  return [
    ['stories260k via ServingEngine', '64 at once: output tokens/s', `${(r.tokens / r.seconds).toFixed(0)} (${r.tokens} tokens in ${r.seconds.toFixed(2)} s)`],
    ['stories260k via ServingEngine', `JS step callback at 64 running (median of ${full.length})`, `${cb.toFixed(0)} µs = ${((100 * cb) / loop).toFixed(1)}% of the ${(loop / 1000).toFixed(3)} ms step (overlaps the next step)`],
  ];
}

const quick = process.argv.includes('--quick');
const rows: string[][] = [];
rows.push(...(await benchModel('stories260k', builtinModelDir(), CONCURRENT)));
rows.push(...(await benchFront()));
if (!quick) {
  const shape = 'qwen2.5-0.5b-instruct';
  const dir = ensureRandomModel(shape, path.join(projectRoot(), 'bench', 'models', shape));
  rows.push(...(await benchModel('qwen2.5-0.5b shape (random bf16)', dir, 4)));
}
console.log(`machine: ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length} threads; prompt ${PROMPT}, output ${OUTPUT}, page size 16`);
console.log('| model | measure | value |\n|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
