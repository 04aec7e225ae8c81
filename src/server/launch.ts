// Launches the server a user runs (`npm start -- [flags]`): the engine in this process (LocalRuntime) or,
// with --grpc-target, a RemoteRuntime to another process; then the REST gateway and, with --grpc-port, the
// gRPC server, both over the same RuntimeService. Nothing listens until the engine can generate (after the
// warm-up request, as SGLang sends one), so /health answers only once the server is ready.
import type { FastifyInstance } from 'fastify';
import { ServingEngine } from '../engine/engine.js';
import { builtinModelDir } from '../engine/builtin-model.js';
import { resolveModelPath } from '../engine/model-path.js';
import { loadAddon } from '../native/addon.js';
import { createGateway } from '../http/gateway.js';
import { startGrpcServer, type GrpcServerHandle } from '../grpc/server.js';
import { buildServerArgs, LocalRuntime } from '../runtime/local-runtime.js';
import { RemoteRuntime } from '../runtime/remote-runtime.js';
import type { RuntimeService } from '../runtime/runtime-service.js';
import type { ServerOptions } from './server-flags.js';
import { listWeightFiles, prefetchWeights } from '../engine/weight-prefetch.js';
import { createProgress, type ProgressSink } from './load-progress.js';

export interface RunningServer {
  runtime: RuntimeService;
  http: FastifyInstance;
  httpPort: number;
  grpc: GrpcServerHandle | null;
  close(): Promise<void>;
}

type Log = (msg: string) => void;

function checkUnsupported(o: ServerOptions): void {
  const addon = loadAddon();
  if (o.device === 'cuda' && !(addon.cudaCompiled && (addon.cudaDeviceCount?.() ?? 0) > 0)) {
    throw new Error('--device cuda: no CUDA device (or the addon was built without CUDA)');
  }
}

async function localRuntime(o: ServerOptions, log: Log, progressStream: ProgressSink['stream']): Promise<LocalRuntime> {
  const given = o.modelPath ?? builtinModelDir();
  const dir = resolveModelPath(given);
  log(`Loading ${given}${dir !== given ? ` (${dir})` : ''} ...`);
  const t0 = performance.now();
  const files = listWeightFiles(dir);
  if (files.length > 0) {
    const bar = createProgress(`Reading weights (${files.length} file${files.length > 1 ? 's' : ''})`, files.reduce((s, f) => s + f.bytes, 0), { stream: progressStream, log });
    await prefetchWeights(files, (done) => bar.update(done));
    bar.finish();
  }
  const tokenizerPath = o.tokenizerPath !== null ? resolveModelPath(o.tokenizerPath) : undefined;
  const engine = await ServingEngine.create({ ...o.engine, modelPath: dir, tokenizerPath, isEmbedding: o.isEmbedding });
  const info = engine.info;
  // The CPU computes on the checkpoint's weights as stored; the GPU converts every checkpoint to bf16, or to
  // f32 with --dtype float32 (the float32 CUDA backend, chosen by the engine from the same flag).
  const runs = info.backend === 'cuda' ? info.activationDtype : info.dtype;
  if (o.dtype !== 'auto' && !sameDtype(o.dtype, runs)) {
    await engine.close();
    throw new Error(
      info.backend === 'cuda'
        ? `--dtype ${o.dtype}: the CUDA backend runs bfloat16 or float32; use --dtype auto, bfloat16 or float32`
        : `--dtype ${o.dtype}: the CPU backend uses the weights as stored (${info.dtype}); use --dtype auto`,
    );
  }
  if (o.contextLength !== null) {
    if (o.contextLength < 1 || o.contextLength > info.contextLength) {
      await engine.close();
      throw new Error(`--context-length ${o.contextLength} must be in [1, ${info.contextLength}] (the model's max_position_embeddings)`);
    }
    engine.info.contextLength = o.contextLength; // the front validates and clamps requests against it
  }
  log(
    `Loaded ${info.architecture} (${info.numLayers} layers, ${info.backend === 'cuda' ? `${info.dtype} weights run in ${info.activationDtype}` : info.dtype}, ${(info.weightBytes / 1e6).toFixed(1)} MB weights, ` +
      `${info.numPages * info.pageSize} KV tokens) on ${info.backend} in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
  );
  const recorderMode = engine.options.expertDistributionRecorderMode;
  if (recorderMode !== null && info.moeLayerIds.length === 0) {
    log(`--expert-distribution-recorder-mode ${recorderMode}: ${info.architecture} has no MoE layers, so the expert distribution record stays empty`);
  }
  const servedModelName = o.servedModelName ?? given;
  const serverArgs = buildServerArgs(engine, {
    modelPath: given, tokenizerPath: o.tokenizerPath ?? given, servedModelName, host: o.host, port: o.port, grpcPort: o.grpcPort,
    apiKey: o.apiKey, logLevel: o.logLevel, enableMetrics: o.enableMetrics, preferredSamplingParams: o.preferredSamplingParams,
  });
  Object.assign(serverArgs, {
    context_length: o.contextLength,
    mem_fraction_static: o.memFractionStatic,
    attention_backend: o.attentionBackend,
    skip_server_warmup: o.skipServerWarmup,
    is_embedding: o.isEmbedding,
  });
  return new LocalRuntime(engine, {
    modelPath: given, tokenizerPath: o.tokenizerPath ?? given, servedModelName, serverArgs,
    preferredSamplingParams: o.preferredSamplingParams, enableMetrics: o.enableMetrics,
  });
}

function sameDtype(flag: string, stored: string): boolean {
  const norm = (d: string) => ({ half: 'float16', float: 'float32', bf16: 'bfloat16', fp16: 'float16' })[d] ?? d;
  return norm(flag) === norm(stored);
}

/**
 * `log` takes the server's log lines; `progressStream` draws the loading bar when it is a TTY (stderr by
 * default; otherwise the progress goes through `log` as a line per quarter).
 */
export async function launchServer(
  o: ServerOptions,
  log: Log = (m) => console.error(`[sglang-ts] ${m}`),
  progressStream: ProgressSink['stream'] = process.stderr,
): Promise<RunningServer> {
  checkUnsupported(o);
  let runtime: RuntimeService;
  if (o.grpcTarget !== null) {
    runtime = new RemoteRuntime(o.grpcTarget, { apiKey: o.apiKey });
    log(`Gateway mode: forwarding to the engine at ${o.grpcTarget}`);
    const t0 = performance.now();
    while (!(await runtime.ready())) {
      if (performance.now() - t0 > 600_000) throw new Error(`the engine at ${o.grpcTarget} did not become ready within 10 minutes`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } else {
    runtime = await localRuntime(o, log, progressStream);
    if (!o.skipServerWarmup) {
      const ok = await runtime.healthGenerate(60_000);
      if (!ok) throw new Error('the warm-up generation failed');
      log('Warm-up generation done');
    }
  }
  const http = createGateway(runtime, { apiKey: o.apiKey, enableMetrics: o.enableMetrics, logLevel: o.logLevel === 'debug' ? 'debug' : undefined });
  let grpc: GrpcServerHandle | null = null;
  try {
    if (o.grpcPort !== null) {
      grpc = await startGrpcServer(runtime, { host: o.host, port: o.grpcPort, apiKey: o.apiKey });
      log(`gRPC server listening on ${o.host}:${grpc.port}`);
    }
    await http.listen({ host: o.host, port: o.port });
  } catch (err) {
    await grpc?.close();
    await runtime.close();
    throw err;
  }
  const addr = http.server.address();
  const httpPort = typeof addr === 'object' && addr !== null ? addr.port : o.port;
  log(`The server is fired up and ready to roll! REST on http://${o.host}:${httpPort}`);
  let closing: Promise<void> | null = null;
  return {
    runtime,
    http,
    httpPort,
    grpc,
    close: () =>
      (closing ??= (async () => {
        await http.close();
        await grpc?.close();
        await runtime.close();
      })()),
  };
}
