// Every native route of SGLang's http_server.py except /generate (generate-route.ts): the generation models'
// and the pooled models' (/encode, /classify, /v1/embeddings, /v1/rerank; src/runtime/pooled-endpoints.ts).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import {
  RuntimeError,
  type AbortReq,
  type DetokenizeReq,
  type EmbeddingsReq,
  type EncodeReq,
  type ExpertDistributionOp,
  type RerankReq,
  type RuntimeService,
  type ScoreReq,
  type TokenizeReq,
  type UpdateWeightsReq,
} from '../runtime/runtime-service.js';
import { badRequest } from './errors.js';
import { jsonBody } from './number-json.js';

/** http_server's HEALTH_CHECK_TIMEOUT (env SGLANG_HEALTH_CHECK_TIMEOUT, seconds, default 20). */
const healthCheckTimeoutMs = (): number => {
  const v = Number(process.env.SGLANG_HEALTH_CHECK_TIMEOUT ?? 20);
  return (Number.isFinite(v) && v > 0 ? v : 20) * 1000;
};

const FLUSH_CACHE_TEXT =
  'Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting requests, the operation will not be performed.)\n';

/**
 * Whether a client asked for JSON instead of SGLang's plain text (an extension: SGLang always answers text):
 * `?format=json`, or `application/json` in Accept (not a bare wildcard).
 */
function wantsJson(request: FastifyRequest): boolean {
  const q = (request.query as Record<string, unknown>).format;
  if (q !== undefined) return q === 'json';
  const accept = String(request.headers.accept ?? '').toLowerCase();
  return accept.split(',').some((part) => part.split(';', 1)[0]!.trim() === 'application/json');
}

/** SGLang's validate_json_request dependency (the OpenAI-style routes: tokenize, detokenize, score). */
async function requireJson(request: FastifyRequest): Promise<void> {
  const media = String(request.headers['content-type'] ?? '').toLowerCase().split(';', 1)[0]?.trim();
  if (media !== 'application/json') throw badRequest("Unsupported Media Type: Only 'application/json' is allowed");
}

export interface RouteOptions {
  enableMetrics: boolean;
}

export function registerRoutes(app: FastifyInstance, runtime: RuntimeService, opts: RouteOptions): void {
  const modelInfo = async () => runtime.modelInfo();
  app.get('/get_model_info', modelInfo);
  app.get('/model_info', modelInfo);

  const serverInfo = async () => runtime.serverInfo();
  app.get('/server_info', serverInfo);
  app.get('/get_server_info', serverInfo);

  app.get('/health', async (_req, reply) => reply.code((await runtime.ready()) ? 200 : 503).send());
  app.get('/health_generate', async (_req, reply) => {
    const ok = (await runtime.ready()) && (await runtime.healthGenerate(healthCheckTimeoutMs()));
    return reply.code(ok ? 200 : 503).send();
  });

  const flushCache = async (request: FastifyRequest, reply: FastifyReply) => {
    const raw = (request.query as Record<string, unknown>).timeout;
    let timeout = 0;
    if (raw !== undefined && raw !== '') {
      timeout = Number(raw);
      if (typeof raw !== 'string' || !Number.isFinite(timeout)) throw badRequest(`timeout must be a number of seconds, got ${JSON.stringify(raw)}.`);
    }
    const ok = await runtime.flushCache(timeout);
    return reply.code(ok ? 200 : 400).type('text/plain; charset=utf-8').send(FLUSH_CACHE_TEXT);
  };
  app.get('/flush_cache', flushCache);
  app.post('/flush_cache', flushCache);

  app.post('/update_weights_from_disk', async (request, reply) => {
    const body = request.body as UpdateWeightsReq | undefined;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('The request body must be a JSON object.');
    if (typeof body.model_path !== 'string') throw badRequest("'model_path' is required and must be a string.");
    try {
      const out = await runtime.updateWeightsFromDisk(body);
      return reply.code(out.success ? 200 : 400).send(out);
    } catch (err) {
      if (!(err instanceof RuntimeError)) throw err;
      return reply.code(err.status).send({ success: false, message: err.message, num_paused_requests: 0 });
    }
  });

  const tokenize = async (request: FastifyRequest) => runtime.tokenize(request.body as TokenizeReq);
  const detokenize = async (request: FastifyRequest) => runtime.detokenize(request.body as DetokenizeReq);
  for (const p of ['/tokenize', '/v1/tokenize']) app.post(p, { preHandler: requireJson }, tokenize);
  for (const p of ['/detokenize', '/v1/detokenize']) app.post(p, { preHandler: requireJson }, detokenize);
  app.post('/v1/score', { preHandler: requireJson }, async (request) => runtime.score(request.body as ScoreReq));

  // Pooled models (--is-embedding, reward models, cross-encoders). On a generation model each answers 400
  // with SGLang's "does not appear to be an embedding model" message.
  // Their embeddings go out through jsonBody (number-json.ts): the long number arrays written by the addon,
  // float32 rows (embeddings) with float32's shortest digits, other numbers as JSON.stringify writes them.
  const json = (reply: FastifyReply, body: unknown) => reply.type('application/json; charset=utf-8').send(jsonBody(body));
  const encode = async (request: FastifyRequest, reply: FastifyReply) => json(reply, await runtime.encode(request.body as EncodeReq));
  const classify = async (request: FastifyRequest, reply: FastifyReply) => json(reply, await runtime.classify(request.body as EncodeReq));
  app.post('/encode', encode);
  app.put('/encode', encode);
  app.post('/classify', classify);
  app.put('/classify', classify);
  app.post('/v1/embeddings', { preHandler: requireJson }, async (request, reply) => json(reply, await runtime.embeddings(request.body as EmbeddingsReq)));
  app.post('/v1/rerank', { preHandler: requireJson }, async (request) => runtime.rerank(request.body as RerankReq));

  app.post('/abort_request', async (request, reply) => {
    const body = request.body as AbortReq | undefined;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('The request body must be a JSON object.');
    await runtime.abortRequest(body);
    return reply.code(200).send();
  });

  // The expert distribution recorder (MoE models; src/runtime/expert-distribution.ts): GET or POST, SGLang's
  // text bodies; with ?format=json or Accept: application/json, {"message", "record"} (the record on dump).
  // Without --expert-distribution-recorder-mode: 400 {"error": {"message": ...}}.
  for (const op of ['start', 'stop', 'dump'] as const satisfies readonly ExpertDistributionOp[]) {
    const handler = async (request: FastifyRequest, reply: FastifyReply) => {
      const res = await runtime.expertDistributionRecord(op);
      if (wantsJson(request)) return reply.send({ message: res.message.trimEnd(), ...(res.record !== undefined ? { record: res.record } : {}) });
      return reply.type('text/plain; charset=utf-8').send(res.message);
    };
    app.get(`/${op}_expert_distribution_record`, handler);
    app.post(`/${op}_expert_distribution_record`, handler);
  }

  // SGLang answers a list with one GetLoadReqOutput per DP rank.
  app.get('/get_load', async () => {
    const load = await runtime.getLoad();
    return Array.isArray(load) ? load : [load];
  });

  app.get('/v1/models', async () => runtime.listModels());

  if (opts.enableMetrics) {
    app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4; charset=utf-8').send(await runtime.metrics()));
  }
}
