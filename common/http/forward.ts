import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

/**
 * Forwards an authenticated, validated request to the process that owns what it asks about (a scaled
 * deployment's worker) and answers with that process's answer: status, content type, Retry-After and body as
 * they came. The caller's bearer token goes along — the other process checks it against the same tokens file.
 * No answer within `timeoutMs` (or none at all): 503 `CFM_API_UNAVAILABLE`, naming what did not answer.
 */
export async function forward(
  base: string,
  req: FastifyRequest,
  reply: FastifyReply,
  opts: { what: string; timeoutMs?: number },
): Promise<FastifyReply> {
  const url = new URL(req.url, base.endsWith('/') ? base : `${base}/`);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (req.headers.authorization) headers.authorization = req.headers.authorization;
  const hasBody = req.body !== undefined && req.method !== 'GET' && req.method !== 'HEAD';
  if (hasBody) headers['content-type'] = 'application/json; charset=utf-8';
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: req.method,
      headers,
      ...(hasBody ? { body: JSON.stringify(req.body) } : {}),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
    text = await res.text();
  } catch (err) {
    req.log.warn({ err, url: url.origin }, `${opts.what} did not answer`);
    throw new ApiError(503, 'CFM_API_UNAVAILABLE', `${opts.what} did not answer; retry later`);
  }
  const retryAfter = res.headers.get('retry-after');
  if (retryAfter) reply.header('retry-after', retryAfter);
  return reply
    .code(res.status)
    .type(res.headers.get('content-type') ?? 'application/json; charset=utf-8')
    .send(text);
}
