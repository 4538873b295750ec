import { type Logger, type LoggerOptions, pino } from 'pino';
import { z } from 'zod';
import { redact } from './redact.js';

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

/**
 * The process logger: JSON lines on stdout (pino), the format every log shipper reads. Objects logged under
 * `config`, `target` or `err` pass through the same secret-redaction as printed configuration.
 */
export function createLogger(
  name: string,
  cfg: Partial<LogConfig> = {},
  destination?: pino.DestinationStream,
): Logger {
  const opts: LoggerOptions = {
    name,
    level: cfg.level ?? 'info',
    serializers: { config: redact, target: redact, err: pino.stdSerializers.err },
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
