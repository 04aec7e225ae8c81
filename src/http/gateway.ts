// The REST gateway: SGLang's native HTTP API (entrypoints/http_server.py) over a RuntimeService, so that it
// behaves the same over the in-process engine (LocalRuntime) and over gRPC (RemoteRuntime).
//
// Body parsing: every content type is read as JSON (FastAPI reads a JSON body whatever the header says; the
// OpenAI-style routes check the header themselves); an empty body is `undefined`. A body that is not JSON,
// or that fails a route's schema, is 400 {"object": "error", ..., "type": "BadRequestError", "code": 400}.
// CORS as SGLang's (cors.ts). A known path asked with another method: 405 {"detail": "Method Not Allowed"}.
// --api-key: utils/auth.py's middleware: `Authorization: Bearer KEY` on every route except OPTIONS, /health*
// and /metrics*, else 401 {"error": "Unauthorized"}.
import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';

import { RuntimeError, type RuntimeService } from '../runtime/runtime-service.js';
import { registerCors } from './cors.js';
import { openaiErrorBody, sendRuntimeError } from './errors.js';
import { registerGenerate } from './generate-route.js';
import { registerRoutes } from './routes.js';

export interface GatewayOptions {
  /** --api-key: required as `Authorization: Bearer KEY` (null / undefined: no auth). */
  apiKey?: string | null;
  /** --enable-metrics: serve GET /metrics (404 without). */
  enableMetrics?: boolean;
  /** Fastify's logger level (SGLang's --log-level-http / --log-level); undefined: no request logging. */
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Largest accepted body in bytes (default 64 MiB: long input_ids lists, batches). */
  bodyLimit?: number;
}

function bearerMatches(header: string | undefined, key: string): boolean {
  if (!header) return false;
  const sp = header.indexOf(' ');
  if (sp < 0 || header.slice(0, sp).toLowerCase() !== 'bearer') return false;
  const given = Buffer.from(header.slice(sp + 1));
  const want = Buffer.from(key);
  return given.length === want.length && timingSafeEqual(given, want);
}

export function createGateway(runtime: RuntimeService, opts: GatewayOptions = {}): FastifyInstance {
  const app = Fastify({
    logger: opts.logLevel !== undefined ? { level: opts.logLevel } : false,
    bodyLimit: opts.bodyLimit ?? 64 * 1024 * 1024,
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(new RuntimeError(400, `JSON decode error: ${(err as Error).message}`, 'openai'), undefined);
    }
  });

  registerCors(app); // first: a preflight is answered before the api-key check

  // Which methods each path has, for Starlette's 405 (a path that exists, asked with another method).
  const methodsByPath = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const set = methodsByPath.get(route.url) ?? new Set<string>();
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) set.add(m);
    methodsByPath.set(route.url, set);
  });

  const apiKey = opts.apiKey ?? null;
  if (apiKey) {
    app.addHook('onRequest', async (request, reply) => {
      if (request.method === 'OPTIONS') return;
      const path = request.url.split('?', 1)[0] as string;
      if (path.startsWith('/health') || path.startsWith('/metrics')) return;
      if (!bearerMatches(request.headers.authorization, apiKey)) return reply.code(401).send({ error: 'Unauthorized' });
    });
  }

  app.setErrorHandler((err: FastifyError | RuntimeError | Error, request, reply) => {
    if (reply.sent || reply.raw.headersSent) return;
    if (err instanceof RuntimeError) return sendRuntimeError(reply, err);
    const status = (err as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // Fastify's own refusals (body too large, bad content length, ...): the OpenAI error shape.
      return reply.code(status).send(openaiErrorBody(status, err.message));
    }
    request.log.error(err);
    return reply.code(500).send(openaiErrorBody(500, err.message || 'Internal server error'));
  });

  // FastAPI's bodies: 405 with an Allow header for a known path, else 404.
  app.setNotFoundHandler((request, reply) => {
    const methods = methodsByPath.get(request.url.split('?', 1)[0] as string);
    if (methods !== undefined) {
      return reply.code(405).header('allow', [...methods].join(', ')).send({ detail: 'Method Not Allowed' });
    }
    return reply.code(404).send({ detail: 'Not Found' });
  });

  registerGenerate(app, runtime);
  registerRoutes(app, runtime, { enableMetrics: opts.enableMetrics === true });
  return app;
}
