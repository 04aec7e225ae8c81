// The gRPC front door: sglang.runtime.v1.Runtime (proto/runtime.proto) over any RuntimeService, plus
// grpc.health.v1 (SERVING once runtime.ready()) and server reflection. Requests and responses are mapped with
// src/runtime/proto-codec.ts; a RuntimeError becomes the gRPC status grpcCodeForStatus(status) with the same
// message as details, and its HTTP status and body format in trailing metadata (x-error-status,
// x-error-format) so that a RemoteRuntime rebuilds the very same RuntimeError. With an API key, every Runtime
// RPC needs `authorization: Bearer KEY` (UNAUTHENTICATED otherwise); health and reflection stay open, as
// orchestrator probes (grpc_health_probe, Kubernetes gRPC probes) send no credentials.
import { timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import { RuntimeError, grpcCodeForStatus, type RuntimeService } from '../runtime/runtime-service.js';
import {
  abortRequestCodec,
  detokenizeRequestCodec,
  detokenizeResponseCodec,
  encodeItem,
  encodeShape,
  expertDistributionResponseCodec,
  generateRequestCodec,
  listModelsCodec,
  modelInfoCodec,
  scoreRequestCodec,
  scoreResponseCodec,
  encodeRequestCodec,
  encodeResponseCodec,
  embeddingsRequestCodec,
  embeddingsResponseCodec,
  rerankRequestCodec,
  rerankResponseCodec,
  tokenizeRequestCodec,
  tokenizeResponseCodec,
  toProtoStruct,
  updateWeightsRequestCodec,
  updateWeightsResponseCodec,
  type ProtoMessage,
} from '../runtime/proto-codec.js';
import { ERROR_FORMAT_KEY, ERROR_KIND_KEY, ERROR_STATUS_KEY, RUNTIME_SERVICE, runtimePackageDefinition, runtimeService } from './proto.js';

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port (the bound one is returned). */
  port: number;
  /** When set, Runtime RPCs need metadata `authorization: Bearer <apiKey>`. */
  apiKey?: string | null;
  /** How often health is re-read from runtime.ready() (ms); default 1000 until ready, then 5000. */
  healthPollMs?: number;
}

export interface GrpcServerHandle {
  server: grpc.Server;
  port: number;
  health: HealthImplementation;
  /** Stops the health poller and shuts the server down (forcefully after graceMs, default 2000). */
  close(graceMs?: number): Promise<void>;
}

/** A thrown value as a gRPC error: RuntimeError → its status and message; anything else → INTERNAL. */
export function toGrpcError(e: unknown): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (e instanceof RuntimeError) {
    metadata.set(ERROR_STATUS_KEY, String(e.status));
    metadata.set(ERROR_FORMAT_KEY, e.format);
    return Object.assign(new Error(e.message), { code: grpcCodeForStatus(e.status), details: e.message, metadata });
  }
  const message = e instanceof Error ? e.message : String(e);
  metadata.set(ERROR_KIND_KEY, 'plain');
  return Object.assign(new Error(message), { code: grpc.status.INTERNAL, details: message, metadata });
}

function unauthenticated(): grpc.ServiceError {
  return Object.assign(new Error('Unauthorized'), { code: grpc.status.UNAUTHENTICATED, details: 'Unauthorized', metadata: new grpc.Metadata() });
}

function makeAuthCheck(apiKey: string | null | undefined): (md: grpc.Metadata) => boolean {
  if (!apiKey) return () => true;
  const want = Buffer.from(apiKey);
  // As the REST gateway: the scheme is case-insensitive, the key compared in constant time.
  return (md) => {
    const got = md.get('authorization')[0];
    if (typeof got !== 'string') return false;
    const sp = got.indexOf(' ');
    if (sp < 0 || got.slice(0, sp).toLowerCase() !== 'bearer') return false;
    const given = Buffer.from(got.slice(sp + 1));
    return given.length === want.length && timingSafeEqual(given, want);
  };
}

export async function startGrpcServer(runtime: RuntimeService, opts: GrpcServerOptions): Promise<GrpcServerHandle> {
  const authorized = makeAuthCheck(opts.apiKey);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': -1,
  });

  const unary =
    (fn: (req: ProtoMessage) => Promise<ProtoMessage>): grpc.handleUnaryCall<ProtoMessage, ProtoMessage> =>
    (call, callback) => {
      if (!authorized(call.metadata)) return callback(unauthenticated());
      let p: Promise<ProtoMessage>;
      try {
        p = fn(call.request ?? {});
      } catch (e) {
        return callback(toGrpcError(e));
      }
      p.then(
        (res) => callback(null, res),
        (e) => callback(toGrpcError(e)),
      );
    };

  const generate: grpc.handleServerStreamingCall<ProtoMessage, ProtoMessage> = (call) => {
    if (!authorized(call.metadata)) {
      call.emit('error', unauthenticated());
      return;
    }
    void serveGenerate(runtime, call);
  };

  const { definition } = runtimeService();
  server.addService(definition, {
    Generate: generate,
    ModelInfo: unary(async () => modelInfoCodec.encode(await runtime.modelInfo())),
    ServerInfo: unary(async () => ({ info: toProtoStruct(await runtime.serverInfo()) })),
    Ready: unary(async () => ({ ready: await runtime.ready() })),
    HealthGenerate: unary(async (req) => ({ ok: await runtime.healthGenerate((req.timeout_ms as number | undefined) ?? 0) })),
    FlushCache: unary(async (req) => ({ flushed: await runtime.flushCache((req.timeout_s as number | undefined) ?? 0) })),
    UpdateWeightsFromDisk: unary(async (req) =>
      updateWeightsResponseCodec.encode(await runtime.updateWeightsFromDisk(updateWeightsRequestCodec.decode(req))),
    ),
    Tokenize: unary(async (req) => tokenizeResponseCodec.encode(await runtime.tokenize(tokenizeRequestCodec.decode(req)))),
    Detokenize: unary(async (req) => detokenizeResponseCodec.encode(await runtime.detokenize(detokenizeRequestCodec.decode(req)))),
    Score: unary(async (req) => scoreResponseCodec.encode(await runtime.score(scoreRequestCodec.decode(req)))),
    Encode: unary(async (req) => encodeResponseCodec.encode(await runtime.encode(encodeRequestCodec.decode(req)))),
    Classify: unary(async (req) => encodeResponseCodec.encode(await runtime.classify(encodeRequestCodec.decode(req)))),
    Embeddings: unary(async (req) => embeddingsResponseCodec.encode(await runtime.embeddings(embeddingsRequestCodec.decode(req)))),
    Rerank: unary(async (req) => rerankResponseCodec.encode(await runtime.rerank(rerankRequestCodec.decode(req)))),
    AbortRequest: unary(async (req) => {
      await runtime.abortRequest(abortRequestCodec.decode(req));
      return {};
    }),
    GetLoad: unary(async () => ({ load: toProtoStruct(await runtime.getLoad()) })),
    ListModels: unary(async () => listModelsCodec.encode(await runtime.listModels())),
    Metrics: unary(async () => ({ text: await runtime.metrics() })),
    StartExpertDistributionRecord: unary(async () => expertDistributionResponseCodec.encode(await runtime.expertDistributionRecord('start'))),
    StopExpertDistributionRecord: unary(async () => expertDistributionResponseCodec.encode(await runtime.expertDistributionRecord('stop'))),
    DumpExpertDistributionRecord: unary(async () => expertDistributionResponseCodec.encode(await runtime.expertDistributionRecord('dump'))),
  });

  // grpc.health.v1: '' (the whole server) and the Runtime service, NOT_SERVING until runtime.ready().
  const health = new HealthImplementation({ '': 'NOT_SERVING', [RUNTIME_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);
  new ReflectionService(runtimePackageDefinition()).addToServer(server);

  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const poll = async (): Promise<void> => {
    let ready = false;
    try {
      ready = await runtime.ready();
    } catch {
      ready = false;
    }
    if (closed) return;
    const status = ready ? 'SERVING' : 'NOT_SERVING';
    health.setStatus('', status);
    health.setStatus(RUNTIME_SERVICE, status);
    timer = setTimeout(() => void poll(), opts.healthPollMs ?? (ready ? 5000 : 1000));
    timer.unref();
  };

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${opts.host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  await poll();

  return {
    server,
    port,
    health,
    close(graceMs = 2000) {
      closed = true;
      if (timer) clearTimeout(timer);
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}

/** One Generate call: the shape, then every item, with backpressure; a client cancel aborts the request. */
async function serveGenerate(runtime: RuntimeService, call: grpc.ServerWritableStream<ProtoMessage, ProtoMessage>): Promise<void> {
  const ac = new AbortController();
  const onCancel = () => ac.abort();
  call.on('cancelled', onCancel);
  if (call.cancelled) ac.abort();

  const write = async (msg: ProtoMessage): Promise<void> => {
    if (call.write(msg)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        call.off('drain', done);
        ac.signal.removeEventListener('abort', done);
        resolve();
      };
      call.on('drain', done);
      ac.signal.addEventListener('abort', done);
    });
  };

  try {
    const req = generateRequestCodec.decode(call.request ?? {});
    const { shape, items } = await runtime.generate(req, ac.signal);
    if (ac.signal.aborted) {
      // The client is gone: let the runtime see the end of its consumer too.
      await items[Symbol.asyncIterator]().return?.();
      return;
    }
    await write(encodeShape(shape));
    for await (const item of items) {
      if (ac.signal.aborted) break;
      await write(encodeItem(item));
    }
    if (!ac.signal.aborted) call.end();
  } catch (e) {
    if (!ac.signal.aborted) call.emit('error', toGrpcError(e));
  } finally {
    call.off('cancelled', onCancel);
  }
}
