import {
  type CommunicationObserver,
  HttpError,
  type SendOptions,
  type Transport,
} from '@influxdata/influxdb-client';

/**
 * Wraps the client library's HTTP transport:
 *
 * - **InfluxDB 1.x older than 1.8** has no `/api/v2/write`. The WriteApi is kept as it is (its batching,
 *   retries, back-off and gzip) and only its request is re-addressed: `/api/v2/write?org=&bucket=db/rp&precision=ms`
 *   becomes `/write?db=db&rp=rp&precision=ms` (InfluxDB 1.x HTTP API), with Basic auth when a user is configured.
 * - **A write's body is the one its token names**: the writer hands the WriteApi a short token per request and
 *   keeps the request's lines encoded (writer.ts, `Chunk`); `bodyOf` gives them back here.
 * - **Every request is timed**, so write latency and HTTP status become metrics rather than guesses.
 * - **Retriable statuses the library would drop** (408 Request Timeout, 425 Too Early: the WriteApi retries only
 *   network errors and statuses ≥ 429) are handed to it as 503, so its own retry buffer — back-off, Retry-After,
 *   `maxRetryTime` expiry, `maxBufferLines` bound — handles them like any other transient failure.
 */
const RETRY_AS_503 = new Set([408, 425]);

function retriable(err: Error): Error {
  if (!(err instanceof HttpError) || !RETRY_AS_503.has(err.statusCode)) return err;
  return new HttpError(
    503,
    `${err.statusCode} ${err.statusMessage ?? ''}`.trim(),
    err.body,
    err.headers?.['retry-after'] as string | undefined,
    err.contentType,
    `${err.statusCode} ${err.statusMessage ?? ''} (retried as 503): ${err.message}`,
    err.headers,
  );
}
export interface LegacyV1Options {
  /** Basic auth for 1.x, or undefined when auth is disabled on the server. */
  username?: string | undefined;
  password?: string | undefined;
}

export type RequestObserver = (info: {
  path: string;
  status: number | undefined;
  durationMs: number;
}) => void;

const V1_PRECISION: Record<string, string> = { ns: 'n', us: 'u', ms: 'ms', s: 's' };

/** Maps a v2 write path to its 1.x equivalent; any other path is returned unchanged. */
export function toV1WritePath(path: string): string {
  if (!path.startsWith('/api/v2/write?')) return path;
  const q = new URLSearchParams(path.slice('/api/v2/write?'.length));
  const bucket = q.get('bucket') ?? '';
  const slash = bucket.indexOf('/');
  const out = new URLSearchParams();
  out.set('db', slash >= 0 ? bucket.slice(0, slash) : bucket);
  if (slash >= 0 && bucket.slice(slash + 1)) out.set('rp', bucket.slice(slash + 1));
  out.set('precision', V1_PRECISION[q.get('precision') ?? 'ns'] ?? 'n');
  const consistency = q.get('consistency');
  if (consistency) out.set('consistency', consistency);
  return `/write?${out.toString()}`;
}

export class StorageTransport implements Transport {
  readonly chunkCombiner: Transport['chunkCombiner'];
  private readonly authHeader: string | undefined;

  constructor(
    private readonly base: Transport,
    private readonly legacy: LegacyV1Options | undefined,
    private readonly observe: RequestObserver = () => {},
    private readonly bodyOf: (record: string) => Buffer | undefined = () => undefined,
  ) {
    this.chunkCombiner = base.chunkCombiner;
    this.authHeader =
      legacy?.username !== undefined
        ? `Basic ${Buffer.from(`${legacy.username}:${legacy.password ?? ''}`).toString('base64')}`
        : undefined;
  }

  private rewrite(path: string, options: SendOptions): [string, SendOptions] {
    if (!this.legacy) return [path, options];
    const headers = this.authHeader
      ? { ...options.headers, authorization: this.authHeader }
      : options.headers;
    return [toV1WritePath(path), headers ? { ...options, headers } : options];
  }

  send(
    path: string,
    body: string,
    options: SendOptions,
    callbacks?: Partial<CommunicationObserver<Uint8Array>>,
  ): void {
    const [p, o] = this.rewrite(path, options);
    const started = performance.now();
    let status: number | undefined;
    const done = () => this.observe({ path: p, status, durationMs: performance.now() - started });
    // A write's record is the writer's token for a body it encoded (writer.ts, Chunk). The library's transport
    // turns the body into a Buffer with Buffer.from(body, 'utf-8'): given the body's own ArrayBuffer, that is a
    // view of it, not a copy (a copy of every request was 5 % of the collector's CPU, #18). Every write test
    // goes through here, so a library that stopped doing so would fail them, not corrupt data quietly.
    const encoded = this.bodyOf(body);
    const whole = encoded && encoded.byteOffset === 0 && encoded.byteLength === encoded.buffer.byteLength;
    this.base.send(p, (whole ? encoded.buffer : (encoded ?? body)) as string, o, {
      ...callbacks,
      responseStarted(headers, statusCode) {
        status = statusCode;
        callbacks?.responseStarted?.(headers, statusCode);
      },
      error(err) {
        done();
        callbacks?.error?.(retriable(err));
      },
      complete() {
        done();
        callbacks?.complete?.();
      },
    });
  }

  request(
    path: string,
    body: unknown,
    options: SendOptions,
    responseStarted?: Parameters<Transport['request']>[3],
  ) {
    const [p, o] = this.rewrite(path, options);
    return this.base.request(p, body, o, responseStarted);
  }

  iterate(path: string, body: unknown, options: SendOptions) {
    const [p, o] = this.rewrite(path, options);
    return this.base.iterate(p, body, o);
  }
}
