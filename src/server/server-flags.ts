// SGLang's launch_server flags (the names SGLang users already type), each also settable by an environment
// variable (SGL_ + the flag in upper snake case, e.g. SGL_PORT); the command line wins.
import { ENGINE_FLAGS, engineOptionsFrom, flagsHelp, parseFlags, type FlagSpec } from '../cli/engine-flags.js';
import type { ServingEngineOptions } from '../engine/engine.js';
import { ENGINE_DTYPES, type EngineDtype } from '../engine/engine-options.js';

export interface ServerOptions {
  engine: ServingEngineOptions;
  modelPath: string | null; // as given (echoed by /get_model_info); null = the built-in model
  tokenizerPath: string | null;
  host: string;
  port: number;
  grpcPort: number | null; // null: no gRPC server
  grpcTarget: string | null; // gateway-only mode in front of a remote engine
  logLevel: string;
  isEmbedding: boolean;
  memFractionStatic: number | null;
  contextLength: number | null;
  dtype: string;
  servedModelName: string | null;
  apiKey: string | null;
  preferredSamplingParams: Record<string, unknown> | null;
  attentionBackend: string | null;
  skipServerWarmup: boolean;
  enableMetrics: boolean;
  device: string;
}

const none = () => {};
export const SERVER_FLAGS: readonly FlagSpec[] = [
  ...ENGINE_FLAGS,
  { flag: '--host', kind: 'str', help: 'address to listen on (default 127.0.0.1)', apply: none },
  { flag: '--port', kind: 'int', help: 'REST port (default 30000)', apply: none },
  { flag: '--grpc-port', kind: 'int', help: 'gRPC port (default: none; the gRPC server starts when given)', apply: none },
  { flag: '--grpc-target', kind: 'str', help: 'host:port of a remote engine: run the REST gateway alone in front of it', apply: none },
  { flag: '--log-level', kind: 'choice', choices: ['debug', 'info', 'warning', 'error', 'critical'], help: 'log level (default info)', apply: none },
  { flag: '--is-embedding', kind: 'bool', help: 'serve an embedding / reward / cross-encoder model', apply: none },
  { flag: '--context-length', kind: 'int', help: "the model's context length (at most the config's)", apply: none },
  {
    flag: '--dtype', kind: 'choice', choices: ENGINE_DTYPES,
    help: 'GPU: bfloat16 (auto) or float32 / float (f32 throughout, a parity mode); the CPU uses the weights as stored (auto)',
    apply: none, // reaches the engine as ServingEngineOptions.dtype (parseServerOptions)
  },
  { flag: '--served-model-name', kind: 'str', help: 'model name in responses (default: the model path)', apply: none },
  { flag: '--api-key', kind: 'str', help: 'require Authorization: Bearer KEY on every route (REST and gRPC)', apply: none },
  { flag: '--preferred-sampling-params', kind: 'str', help: 'JSON object of default sampling params', apply: none },
  { flag: '--attention-backend', kind: 'str', help: 'attention kernels (accepted; the backend picks its own)', apply: none },
  { flag: '--skip-server-warmup', kind: 'bool', help: 'do not run the warm-up /generate before reporting ready', apply: none },
  { flag: '--enable-metrics', kind: 'bool', help: 'serve Prometheus metrics at /metrics', apply: none },
  { flag: '--help', kind: 'bool', help: 'this text', apply: none },
];

export function serverHelp(): string {
  return `usage: npm start -- [flags]   (each flag also from the environment: --port → SGL_PORT)\n${flagsHelp(SERVER_FLAGS)}`;
}

/** Parses argv (+ environment) into ServerOptions; throws an Error naming a bad or unknown flag. */
export function parseServerOptions(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ServerOptions & { help: boolean } {
  const v = parseFlags(argv, SERVER_FLAGS, env);
  const str = (f: string) => (v.has(f) ? String(v.get(f)) : null);
  const num = (f: string) => (v.has(f) ? Number(v.get(f)) : null);
  let preferred: Record<string, unknown> | null = null;
  const pref = str('--preferred-sampling-params');
  if (pref !== null) {
    try {
      preferred = JSON.parse(pref) as Record<string, unknown>;
    } catch {
      throw new Error(`--preferred-sampling-params must be a JSON object, got ${JSON.stringify(pref)}`);
    }
    if (preferred === null || typeof preferred !== 'object' || Array.isArray(preferred)) throw new Error('--preferred-sampling-params must be a JSON object');
  }
  const memFraction = v.has('--mem-fraction-static') ? Number(v.get('--mem-fraction-static')) : null;
  const port = num('--port') ?? 30000;
  for (const [f, p] of [['--port', port], ['--grpc-port', num('--grpc-port')]] as const) {
    if (p !== null && !(p >= 0 && p <= 65535)) throw new Error(`${f} must be in [0, 65535], got ${p}`);
  }
  return {
    help: v.get('--help') === true,
    // --dtype goes to the engine too: float32 on a GPU picks the float32 CUDA backend.
    engine: { ...engineOptionsFrom(v), ...(v.has('--dtype') ? { dtype: String(v.get('--dtype')) as EngineDtype } : {}) },
    modelPath: str('--model-path'),
    tokenizerPath: str('--tokenizer-path'),
    host: str('--host') ?? '127.0.0.1',
    port,
    grpcPort: num('--grpc-port'),
    grpcTarget: str('--grpc-target'),
    logLevel: str('--log-level') ?? 'info',
    isEmbedding: v.get('--is-embedding') === true,
    memFractionStatic: memFraction,
    contextLength: num('--context-length'),
    dtype: str('--dtype') ?? 'auto',
    servedModelName: str('--served-model-name'),
    apiKey: str('--api-key'),
    preferredSamplingParams: preferred,
    attentionBackend: str('--attention-backend'),
    skipServerWarmup: v.get('--skip-server-warmup') === true,
    enableMetrics: v.get('--enable-metrics') === true,
    device: str('--device') ?? 'auto',
  };
}
