import { type Logger, type LoggerOptions, pino } from 'pino';
import { z } from 'zod';
import { REDACTED, redactUrl, scrubDeep, scrubText } from './redact.js';

export type { Logger } from 'pino';

export const logConfigSchema = z
  .strictObject({
    level: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('Log level; logs are JSON lines on stdout.'),
  })
  .prefault({});
export type LogConfig = z.infer<typeof logConfigSchema>;

/** Keys whose value is never logged, whatever logged them (pino `redact`, a backstop behind the schemas). */
const SECRET_KEYS = [
  'password',
  'token',
  'secret',
  'community',
  'authKey',
  'privKey',
  'authorization',
  'cookie',
];
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `config.*.*.${k}`]);

/** A URL logged under `url`: its user-info and query values are hidden (host and port stay readable). */
function logUrl(u: unknown): unknown {
  if (typeof u !== 'string' && !(u instanceof URL)) return scrubDeep(u);
  const text = String(u);
  try {
    const p = new URL(text);
    return p.username || p.password || p.search || p.hash ? redactUrl(text) : text;
  } catch {
    return scrubText(text);
  }
}

/** pino's error serializer (message and stack with causes), then secrets scrubbed from every string. */
function logErr(e: unknown): unknown {
  if (typeof e === 'string') return scrubText(e);
  // The serialized error is not a plain object (its prototype holds `raw`): copy its fields to scrub them.
  return scrubDeep(e instanceof Error ? { ...pino.stdSerializers.err(e) } : e);
}

/**
 * The process logger: JSON lines on stdout (pino), the format every log shipper reads.
 *
 * Secrets never reach a line. Configuration is logged already redacted by its schema (common/redact.ts); on
 * top of that every line is scrubbed: the message, every string field and every error (message, stack and
 * causes: fetch, mqtt.js and nodemailer quote the URL they failed on) lose URL user-info (`user:pass@`),
 * credential query parameters (`?key=`, `?access_token=`, …) and every secret value of the loaded config
 * (`rememberSecrets`); a `url` field keeps only scheme, host, port and path; and keys named like a credential
 * (`password`, `token`, `community`, …) are censored by pino's `redact`.
 */
export function createLogger(
  name: string,
  cfg: Partial<LogConfig> = {},
  destination?: pino.DestinationStream,
): Logger {
  const opts: LoggerOptions = {
    name,
    level: cfg.level ?? 'info',
    serializers: { config: scrubDeep, target: scrubDeep, url: logUrl, err: logErr },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    formatters: { log: (o) => scrubDeep(o) },
    hooks: {
      logMethod(args, method) {
        const out: unknown[] = args.map((a) => (typeof a === 'string' ? scrubText(a) : a));
        // Without a message of its own, pino takes the logged error's: pass it scrubbed instead.
        const first = out[0];
        const err =
          first instanceof Error
            ? first
            : first && typeof first === 'object' && (first as { err?: unknown }).err instanceof Error
              ? (first as { err: Error; msg?: unknown }).msg === undefined
                ? (first as { err: Error }).err
                : undefined
              : undefined;
        if (err && typeof out[1] !== 'string') out.splice(1, 0, scrubText(err.message));
        method.apply(this, out as Parameters<typeof method>);
      },
    },
    base: { pid: process.pid },
  };
  return destination ? pino(opts, destination) : pino(opts);
}

/** A logger that discards everything, for library use without a process logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * At most one log line per `everyMs`, for a condition that can repeat for every message (a bound being hit by a
 * flood): the first occurrence is logged, the rest are counted by the caller and show in its metrics.
 */
export class LogThrottle {
  private lastMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly everyMs: number) {}

  take(nowMs: number): boolean {
    if (nowMs - this.lastMs < this.everyMs) return false;
    this.lastMs = nowMs;
    return true;
  }
}
