// CORS as SGLang's http_server configures Starlette's CORSMiddleware: allow_origins ["*"],
// allow_credentials true, allow_methods ["*"], allow_headers ["*"], max_age 600 (the default).
//  - A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, 200 "OK", echoing
//    the origin and the requested headers, before routing and before the api-key check (SGLang's auth
//    middleware lets OPTIONS through too).
//  - Any other request with an Origin header gets `Access-Control-Allow-Origin: *` and
//    `Access-Control-Allow-Credentials: true` (the origin itself when the request carries a cookie), set on the
//    raw response so that hijacked replies (the SSE stream) carry them as well.
import type { FastifyInstance } from 'fastify';

const ALL_METHODS = 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT';

export function registerCors(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (origin === undefined) return;
    if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) {
      const headers: Record<string, string> = {
        vary: 'Origin',
        'access-control-allow-methods': ALL_METHODS,
        'access-control-max-age': '600',
        'access-control-allow-credentials': 'true',
        'access-control-allow-origin': origin,
      };
      const requested = request.headers['access-control-request-headers'];
      if (typeof requested === 'string') headers['access-control-allow-headers'] = requested;
      return reply.code(200).headers(headers).type('text/plain; charset=utf-8').send('OK');
    }
    const raw = reply.raw;
    raw.setHeader('access-control-allow-origin', request.headers.cookie !== undefined ? origin : '*');
    raw.setHeader('access-control-allow-credentials', 'true');
    if (request.headers.cookie !== undefined) raw.setHeader('vary', 'Origin');
  });
}
