// SGLang's engine flags (launch_server names) → ServingEngineOptions. Shared by every entry point.
import type { ServingEngineOptions } from '../engine/engine.js';
import { EXPERT_RECORDER_MODES } from '../engine/engine-options.js';
import type { ExpertRecorderMode } from '../native/addon.js';

export interface FlagSpec {
  flag: string;
  kind: 'int' | 'str' | 'bool' | 'choice';
  choices?: readonly string[];
  help: string;
  apply: (o: ServingEngineOptions, v: string | number | boolean) => void;
}

export const ENGINE_FLAGS: readonly FlagSpec[] = [
  { flag: '--model-path', kind: 'str', help: 'a Hugging Face model directory (default: the built-in stories260k)', apply: (o, v) => (o.modelPath = v as string) },
  { flag: '--tokenizer-path', kind: 'str', help: 'tokenizer directory (default: the model directory)', apply: (o, v) => (o.tokenizerPath = v as string) },
  { flag: '--page-size', kind: 'int', help: 'tokens per KV page (default 1)', apply: (o, v) => (o.pageSize = v as number) },
  { flag: '--max-total-tokens', kind: 'int', help: 'KV pool capacity in tokens (default: 16384 on the CPU; from --mem-fraction-static on a GPU)', apply: (o, v) => (o.maxTotalTokens = v as number) },
  { flag: '--chunked-prefill-size', kind: 'int', help: 'prefill chunk size in tokens, -1 disables chunking (default 8192)', apply: (o, v) => (o.chunkedPrefillSize = v as number) },
  { flag: '--max-prefill-tokens', kind: 'int', help: 'prefill token budget per step (default 16384)', apply: (o, v) => (o.maxPrefillTokens = v as number) },
  { flag: '--max-running-requests', kind: 'int', help: 'requests decoded together at most (default 64 on the CPU, 256 on a GPU)', apply: (o, v) => (o.maxRunningRequests = v as number) },
  { flag: '--schedule-policy', kind: 'choice', choices: ['fcfs', 'lpm'], help: 'admission order: fcfs or lpm (longest prefix match) (default fcfs)', apply: (o, v) => (o.schedulePolicy = v as 'fcfs' | 'lpm') },
  { flag: '--disable-radix-cache', kind: 'bool', help: 'turn the radix prefix cache off', apply: (o, v) => (o.disableRadixCache = v as boolean) },
  { flag: '--device', kind: 'choice', choices: ['auto', 'cpu', 'cuda'], help: 'backend: cuda, cpu, or auto (CUDA when a GPU is present; default)', apply: (o, v) => (o.device = v as 'auto' | 'cpu' | 'cuda') },
  {
    flag: '--mem-fraction-static', kind: 'str', help: 'GPU: fraction of device memory for weights + KV pool (default 0.85; the CPU ignores it)',
    apply: (o, v) => {
      const f = Number(v);
      if (!(f > 0 && f < 1)) throw new Error(`--mem-fraction-static must be in (0, 1), got ${JSON.stringify(v)}`);
      o.memFractionStatic = f;
    },
  },
  { flag: '--cuda-graph-max-bs', kind: 'int', help: 'GPU: decode batches up to this size replay CUDA graphs (default 256)', apply: (o, v) => (o.cudaGraphMaxBs = v as number) },
  { flag: '--disable-overlap-schedule', kind: 'bool', help: 'plan each step only after the previous one finished (default: step n+1 is prepared while step n runs)', apply: (o, v) => (o.disableOverlapSchedule = v as boolean) },
  { flag: '--disable-cuda-graph', kind: 'bool', help: 'GPU: run every step eagerly (no CUDA graphs)', apply: (o, v) => (o.disableCudaGraph = v as boolean) },
  { flag: '--random-seed', kind: 'int', help: 'seed of requests without sampling_seed (default random)', apply: (o, v) => (o.randomSeed = v as number) },
  {
    flag: '--expert-distribution-recorder-mode', kind: 'choice', choices: EXPERT_RECORDER_MODES,
    help: 'MoE models: record the experts chosen, for /start|stop|dump_expert_distribution_record (stat, stat_approx, per_pass or per_token; default off)',
    apply: (o, v) => (o.expertDistributionRecorderMode = v as ExpertRecorderMode),
  },
  {
    flag: '--expert-distribution-recorder-buffer-size', kind: 'int',
    help: 'forward passes the expert distribution record keeps (default 1000; negative: all)',
    apply: (o, v) => {
      if (v === 0) throw new Error('--expert-distribution-recorder-buffer-size must be positive, or negative for no limit, got 0');
      o.expertDistributionRecorderBufferSize = v as number;
    },
  },
];

/** The environment variable that also sets a flag: --max-total-tokens → SGL_MAX_TOTAL_TOKENS. */
export function envNameOf(flag: string): string {
  return 'SGL_' + flag.replace(/^--/, '').toUpperCase().replace(/-/g, '_');
}

function convert(spec: FlagSpec, flag: string, v: string): string | number | boolean {
  if (spec.kind === 'bool') {
    if (!['true', 'false', '1', '0', ''].includes(v)) throw new Error(`${flag} takes true or false, got ${JSON.stringify(v)}`);
    return v === 'true' || v === '1' || v === '';
  }
  if (spec.kind === 'int') {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n)) throw new Error(`${flag} must be an integer, got ${JSON.stringify(v)}`);
    return n;
  }
  if (spec.kind === 'choice' && !spec.choices!.includes(v)) throw new Error(`${flag} must be one of ${spec.choices!.join(', ')}, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Parses `--flag value`, `--flag=value` and boolean `--flag` for the given specs; returns the values by flag.
 * A flag not on the command line is taken from its environment variable (envNameOf) when `env` is given.
 * Unknown flags and bad values throw an Error naming the flag (or the variable).
 */
export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[], env?: NodeJS.ProcessEnv): Map<string, string | number | boolean> {
  const out = new Map<string, string | number | boolean>();
  if (env) {
    for (const spec of specs) {
      const name = envNameOf(spec.flag);
      const v = env[name];
      if (v !== undefined) out.set(spec.flag, convert(spec, `${name} (${spec.flag})`, v));
    }
  }
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = (argv[i] as string).split(/=(.*)/s, 2) as [string, string | undefined];
    const spec = specs.find((s) => s.flag === flag);
    if (!spec) throw new Error(`unknown flag: ${flag}`);
    if (spec.kind === 'bool') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') throw new Error(`${flag} takes no value (or =true / =false)`);
      out.set(flag, inline !== 'false');
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    out.set(flag, convert(spec, flag, v));
  }
  return out;
}

export function engineOptionsFrom(values: Map<string, string | number | boolean>): ServingEngineOptions {
  const o: ServingEngineOptions = {};
  for (const spec of ENGINE_FLAGS) if (values.has(spec.flag)) spec.apply(o, values.get(spec.flag)!);
  return o;
}

export function flagsHelp(specs: readonly FlagSpec[]): string {
  return specs
    .map((s) => {
      const name = s.flag + (s.kind === 'bool' ? '' : s.kind === 'choice' ? ` {${s.choices!.join('|')}}` : ' N');
      return `  ${name.length < 34 ? name.padEnd(34) : `${name}  `}${s.help}`;
    })
    .join('\n');
}
