import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

/** Marks a forwarded request: a process that forwards refuses one, so a misdirected URL cannot loop. */
export const FORWARDED_HEADER = 'x-cfm-forwarded';
/** The largest answer taken from the other process (alert lists are well under this). */
export const FORWARD_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Forwards an authenticated, validated request to the process that owns what it asks about (a scaled
 * deployment's worker) and answers with that process's answer: status, content type, Retry-After and body as
 * they came. The caller's bearer token goes along — the other process checks it against the same tokens file.
 *
 * The target is always `base` + the route's own path with its parameters encoded + the query: never a host,
 * port or dot segment the client wrote (an absolute-form request target, `%2e%2e`). Redirects are not followed;
 * an answer larger than `FORWARD_MAX_BYTES` is not read. No answer within `timeoutMs`, a redirect or an
 * oversized answer: 503 `CFM_API_UNAVAILABLE`, naming what did not answer.
 */
export async function forward(
  base: string,
  req: FastifyRequest,
  reply: FastifyReply,
  opts: { what: string; timeoutMs?: number },
): Promise<FastifyReply> {
  const unavailable = (why: string) =>
    new ApiError(503, 'CFM_API_UNAVAILABLE', `${opts.what} ${why}; retry later`);
  if (req.headers[FORWARDED_HEADER] !== undefined)
    throw unavailable('is itself an API instance that forwards (a loop: check api.alertsUrl)');
  const url = forwardUrl(base, req);
  const headers: Record<string, string> = { accept: 'application/json', [FORWARDED_HEADER]: '1' };
  if (req.headers.authorization) headers.authorization = req.headers.authorization;
  const hasBody = req.body !== undefined && req.method !== 'GET' && req.method !== 'HEAD';
  if (hasBody) headers['content-type'] = 'application/json; charset=utf-8';
  let res: Response;
  let body: Buffer;
  try {
    res = await fetch(url, {
      method: req.method,
      headers,
      redirect: 'manual',
      ...(hasBody ? { body: JSON.stringify(req.body) } : {}),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw unavailable(`answered with a redirect (${res.status})`);
    }
    body = await readCapped(res, FORWARD_MAX_BYTES);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    req.log.warn({ err, url: url.origin }, `${opts.what} did not answer`);
    throw unavailable('did not answer');
  }
  const retryAfter = res.headers.get('retry-after');
  if (retryAfter) reply.header('retry-after', retryAfter);
  return reply
    .code(res.status)
    .type(res.headers.get('content-type') ?? 'application/json; charset=utf-8')
    .send(body);
}

/** `base` + the matched route with its parameters encoded + the request's query. */
export function forwardUrl(base: string, req: Pick<FastifyRequest, 'url' | 'params' | 'routeOptions'>): URL {
  const target = new URL(base);
  const params = (req.params ?? {}) as Record<string, string>;
  const route = req.routeOptions.url ?? '/';
  const path = route.replace(/:(\w+)/g, (_, name: string) => {
    const value = params[name] ?? '';
    // A URL parser removes `.` and `..` segments however they are encoded: such an id names nothing.
    if (value === '.' || value === '..') throw new ApiError(404, 'CFM_API_NOT_FOUND', `no ${name} ${value}`);
    return encodeURIComponent(value);
  });
  target.pathname = `${target.pathname.replace(/\/$/, '')}${path}`;
  // Only the query of what the client sent: its scheme, host and path are not ours to follow.
  target.search = new URL(req.url, 'http://forward.invalid').search;
  return target;
}

async function readCapped(res: Response, max: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > max) {
    await res.body?.cancel();
    throw new ApiError(503, 'CFM_API_UNAVAILABLE', `the answer is larger than ${max} bytes`);
  }
  const parts: Buffer[] = [];
  let size = 0;
  if (!res.body) return Buffer.alloc(0);
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > max) throw new ApiError(503, 'CFM_API_UNAVAILABLE', `the answer is larger than ${max} bytes`);
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts);
}
