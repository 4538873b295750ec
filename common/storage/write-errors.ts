import { HttpError } from '@influxdata/influxdb-client';

/**
 * What to do with a batch that InfluxDB did not accept. Following Telegraf's outputs.influxdb: retry what may
 * succeed later, split what was too large, drop-and-count what will never be accepted, stop on credentials.
 */
export type WriteAction =
  | { kind: 'retry'; retryAfterMs?: number; why: string }
  | { kind: 'split'; why: string }
  | { kind: 'drop'; reason: 'rejected' | 'too_large' | 'expired'; dropped?: number; why: string }
  | { kind: 'fatal'; status: number; why: string };

/** Upper bound on an honoured Retry-After, so a misconfigured proxy cannot park the writer for a day. */
export const MAX_RETRY_AFTER_MS = 15 * 60_000;

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Returns milliseconds, or undefined when absent
 * or unparseable. The client library reads only delay-seconds and takes them as milliseconds, so we parse it
 * ourselves and hand the library the right delay.
 */
export function parseRetryAfter(
  header: string | string[] | undefined,
  nowMs = Date.now(),
): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (v === undefined) return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Math.min(Number(s) * 1000, MAX_RETRY_AFTER_MS);
  const at = Date.parse(s);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(at - nowMs, 0), MAX_RETRY_AFTER_MS);
}

/** The server's own words: InfluxDB 1.x puts them in `{"error": …}`, 2.x/3.x in `{"message": …}`. */
export function serverMessage(err: HttpError): string {
  const j = err.json as { error?: unknown; message?: unknown } | undefined;
  if (j && typeof j.error === 'string') return j.error;
  if (j && typeof j.message === 'string') return j.message;
  if (err.body) {
    try {
      const parsed = JSON.parse(err.body) as { error?: unknown; message?: unknown };
      if (typeof parsed.error === 'string') return parsed.error;
      if (typeof parsed.message === 'string') return parsed.message;
    } catch {
      // not JSON: the body itself is the message
    }
    return err.body.slice(0, 500);
  }
  return `${err.statusCode} ${err.statusMessage ?? ''}`.trim();
}

export function classifyWriteError(err: unknown, batchLines: number): WriteAction {
  if (err instanceof HttpError) {
    const status = err.statusCode;
    const msg = serverMessage(err);
    if (status === 401 || status === 403) return { kind: 'fatal', status, why: msg };
    // 1.x: "database not found"; 2.x: "bucket not found". Nothing will succeed until someone fixes config.
    if (status === 404) return { kind: 'fatal', status, why: msg };
    if (status === 413) {
      return batchLines > 1
        ? { kind: 'split', why: msg }
        : { kind: 'drop', reason: 'too_large', why: `a single line exceeds the server's body limit: ${msg}` };
    }
    if (status === 429 || status === 408 || status >= 500) {
      const retryAfterMs = parseRetryAfter(err.headers?.['retry-after']);
      return retryAfterMs === undefined
        ? { kind: 'retry', why: msg }
        : { kind: 'retry', retryAfterMs, why: msg };
    }
    // 400 partial write (1.x: "partial write: … dropped=N"), 422 (2.x): the rest of the batch was written.
    // 1.x counts unparseable lines apart from `dropped=N` (points refused for type conflicts etc.). When a batch
    // has both kinds, 1.6 reports only the conflicts, so the count can be low; `offending` lines are logged.
    const m = /dropped=(\d+)/.exec(msg);
    const unparsed = (msg.match(/unable to parse '/g) ?? []).length;
    const counted = (m ? Number(m[1]) : 0) + unparsed;
    const dropped = counted > 0 ? Math.min(counted, batchLines) : batchLines;
    return { kind: 'drop', reason: 'rejected', dropped, why: msg };
  }
  if (err instanceof Error && err.message === 'Max retry time exceeded.') {
    return { kind: 'drop', reason: 'expired', why: 'gave up after maxRetryTimeMs' };
  }
  // Connection refused/reset, timeouts, DNS: the database may come back.
  const code = (err as { code?: string } | undefined)?.code;
  return { kind: 'retry', why: code ?? (err as Error)?.message ?? String(err) };
}

/** The lines a rejection is about, so the log shows the offending data and not just a count. */
export function offendingLines(why: string, lines: readonly string[]): string[] {
  const parse = /unable to parse '((?:[^'\\]|\\.)*)'/g;
  const found = [...why.matchAll(parse)].map((m) => m[1]!).slice(0, 5);
  if (found.length) return found;
  // "field type conflict: input field "f" on measurement "m" is type string, already exists as type float"
  const conflict = /field type conflict: input field "([^"]+)" on measurement "([^"]+)" is type (\w+)/.exec(
    why,
  );
  if (conflict) {
    const [, field, measurement, type] = conflict as unknown as [string, string, string, string];
    const value = TYPE_PATTERNS[type] ?? '';
    const re = new RegExp(`[ ,]${escapeRe(field)}=${value}`);
    const hit = lines.filter(
      (l) => (l.startsWith(`${measurement},`) || l.startsWith(`${measurement} `)) && re.test(l),
    );
    if (hit.length) return hit.slice(0, 5);
  }
  return lines.slice(0, 1);
}

/** How a field value of each InfluxDB type starts in line protocol. */
const TYPE_PATTERNS: Record<string, string> = {
  string: '"',
  integer: '-?\\d+i[ ,]',
  unsigned: '\\d+u[ ,]',
  float: '-?[\\d.][\\d.eE+-]*[ ,]',
  boolean: '(t|T|true|True|TRUE|f|F|false|False|FALSE)[ ,]',
};

function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}
