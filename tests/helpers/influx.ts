import { createLogger, type Logger } from '../../common/log.js';
import { type InfluxConfig, influxConfigSchema } from '../../common/storage/config.js';
import { Storage, type StorageDeps } from '../../common/storage/storage.js';

export { Influxd } from '../../dev/influxd.js';
export { freePort, waitFor } from '../../dev/ports.js';

/** A logger whose JSON lines are kept for assertions. */
export function captureLogger(name = 'test'): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger(name, { level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** Storage with fast retry settings for tests; `overrides` as in the `influx:` config section. */
export function testStorage(
  url: string,
  overrides: Partial<InfluxConfig> = {},
  deps: Partial<StorageDeps> = {},
): { storage: Storage; lines: Record<string, unknown>[] } {
  const { log, lines } = captureLogger();
  const config = influxConfigSchema.parse({
    url,
    database: 'test',
    flushIntervalMs: 50,
    minRetryDelayMs: 100,
    maxRetryDelayMs: 1_000,
    retryJitterMs: 50,
    shutdownTimeoutMs: 10_000,
    ...overrides,
  });
  return { storage: new Storage(config, { log, ...deps }), lines };
}
