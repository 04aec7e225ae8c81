// POST /generate (and PUT, as SGLang's api_route): one object, or a JSON list for a list input / n > 1; with
// "stream": true, Server-Sent Events exactly as http_server.generate_request frames them: `data: {json}\n\n`
// per chunk (cumulative text; "index" on batch streams), `data: {"error": {"message": ...}}\n\n` for an error
// during the stream, then `data: [DONE]\n\n`. The client closing the connection aborts the engine requests.
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { GenerateOutput, GenerateReqInput, RuntimeService } from '../runtime/runtime-service.js';

/** Resolves once `res` can take more data (or is gone). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** An AbortSignal that fires when the client goes away before the response is complete. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) ac.abort();
  };
  res.once('close', onClose);
  return ac.signal;
}

export function registerGenerate(app: FastifyInstance, runtime: RuntimeService): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const signal = clientGone(reply);
    const body = request.body as GenerateReqInput;
    const { shape, items } = await runtime.generate(body, signal); // validation errors: before any output

    if (body.stream !== true) {
      const outs: GenerateOutput[] = new Array(shape.count);
      for await (const it of items) if (it.final) outs[it.index] = it.output;
      if (signal.aborted) {
        // Nobody to answer: the connection is gone.
        reply.hijack();
        reply.raw.destroy();
        return reply;
      }
      return shape.batch ? outs : outs[0];
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    const write = async (s: string) => {
      if (res.destroyed) return;
      if (!res.write(s)) await drained(res);
    };
    try {
      for await (const it of items) {
        if (res.destroyed) break;
        await write(`data: ${JSON.stringify(it.output)}\n\n`);
      }
    } catch (err) {
      await write(`data: ${JSON.stringify({ error: { message: err instanceof Error ? err.message : String(err) } })}\n\n`);
    }
    if (!res.destroyed) res.end('data: [DONE]\n\n');
    return reply;
  };
  app.post('/generate', handler);
  app.put('/generate', handler);
}
