// SGLang's error bodies (entrypoints/http_server.py):
//  - _create_error_response (a ValueError): {"error": {"message": ...}}, status 400;
//  - ErrorResponse (RequestValidationError, HTTPException, OpenAI-style routes' create_error_response):
//    {"object": "error", "message", "type", "param": null, "code"}; type "BadRequestError" for 400, the
//    status code as a string for HTTPExceptions;
//  - the api-key middleware: {"error": "Unauthorized"}, status 401.
import type { FastifyReply } from 'fastify';
import { RuntimeError } from '../runtime/runtime-service.js';

export function openaiErrorBody(status: number, message: string, type?: string): Record<string, unknown> {
  return {
    object: 'error',
    message,
    type: type ?? (status === 400 ? 'BadRequestError' : status === 500 ? 'InternalServerError' : String(status)),
    param: null,
    code: status,
  };
}

/** Sends a RuntimeError in the body format it names. */
export function sendRuntimeError(reply: FastifyReply, err: RuntimeError): FastifyReply {
  reply.code(err.status);
  if (err.format === 'text') return reply.type('text/plain; charset=utf-8').send(err.message);
  if (err.format === 'openai') return reply.send(openaiErrorBody(err.status, err.message));
  return reply.send({ error: { message: err.message } });
}

/** A body / argument that fails the route's schema: 400 in the OpenAI error shape. */
export function badRequest(message: string): RuntimeError {
  return new RuntimeError(400, message, 'openai');
}
