import type { FastifyReply } from 'fastify';
import type { ErrorCode } from '../../contracts/errors.js';

/** An error a route throws to answer with the API's error shape (`{status: "error", code, message, field?}`). */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
    readonly issues?: unknown[],
    /** The limit a 413/422 exceeded: its configuration key and value. */
    readonly limit?: { name: string; value: number },
  ) {
    super(message);
  }
}

/** Answers with the API's error shape. */
export function sendError(
  reply: FastifyReply,
  status: number,
  code: ErrorCode,
  message: string,
  field?: string,
  issues?: unknown[],
  limit?: { name: string; value: number },
) {
  return reply
    .code(status)
    .type('application/json; charset=utf-8')
    .send(
      JSON.stringify({
        status: 'error',
        code,
        message,
        ...(field ? { field } : {}),
        ...(issues ? { issues } : {}),
        ...(limit ? { limit } : {}),
      }),
    );
}
