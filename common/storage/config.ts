import { z } from 'zod';
import { secret, urlWithSecrets } from '../redact.js';

/**
 * The `influx:` section of every service that talks to InfluxDB (docs/config.md is generated from it). What each
 * key drives: the server and credentials (bootstrap.ts, query.ts), the write pipeline (writer.ts).
 */
export const influxConfigSchema = z
  .strictObject({
    url: urlWithSecrets(z.url())
      .default('http://127.0.0.1:8086')
      .describe('InfluxDB base URL (1.x, 2.x or 3.x).'),
    database: z
      .string()
      .min(1)
      .max(255)
      .default('cfm')
      .describe('Database on 1.x; the bucket on 2.x/3.x (queried through its DBRP mapping).'),
    retentionPolicy: z
      .string()
      .max(255)
      .default('')
      .describe("1.x retention policy; empty = the database's default."),
    org: z.string().default('').describe('2.x organisation (name or id); ignored by 1.x and 3.x.'),
    token: secret(z.string()).optional().describe('2.x/3.x API token; on 1.8+ also `username:password`.'),
    username: z.string().optional().describe('1.x user (Basic auth); goes with `password`.'),
    password: secret(z.string()).optional().describe('1.x password.'),
    writeApi: z
      .enum(['auto', 'v1', 'v2'])
      .default('auto')
      .describe(
        '`auto` decides from /ping (1.x < 1.8 → `/write`, else `/api/v2/write`); `v1`/`v2` force one.',
      ),
    createDatabase: z
      .boolean()
      .default(true)
      .describe('On 1.x, create the database when missing (needs an admin user when auth is on).'),
    timeoutMs: z.number().int().min(100).default(10_000).describe('HTTP request timeout.'),
    batchSize: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(5_000)
      .describe("Lines per write request (InfluxData's recommended 5,000)."),
    flushIntervalMs: z
      .number()
      .int()
      .min(10)
      .default(1_000)
      .describe('Longest a line waits in the write buffer.'),
    maxBufferLines: z
      .number()
      .int()
      .min(1_000)
      .default(1_000_000)
      .describe(
        'Lines held for retry while InfluxDB is down; a failing request that would pass it is dropped and counted.',
      ),
    maxRetryTimeMs: z
      .number()
      .int()
      .min(1_000)
      .default(3_600_000)
      .describe('How long a batch is retried before it is dropped and counted as expired.'),
    minRetryDelayMs: z
      .number()
      .int()
      .min(10)
      .default(1_000)
      .describe('First retry delay (doubles per attempt).'),
    maxRetryDelayMs: z.number().int().min(100).default(60_000).describe('Longest retry delay.'),
    retryJitterMs: z.number().int().min(0).default(500).describe('Random delay added to each retry.'),
    gzip: z
      .enum(['auto', 'always', 'never'])
      .default('auto')
      .describe(
        'Compress write bodies and query replies: `auto` does unless InfluxDB is at a loopback address (this host), where it only costs CPU on both sides.',
      ),
    gzipThreshold: z
      .number()
      .int()
      .min(0)
      .default(1_000)
      .describe('Write bodies larger than this (bytes) are gzipped (query replies, whatever their size).'),
    shutdownTimeoutMs: z
      .number()
      .int()
      .min(0)
      .default(30_000)
      .describe('On stop, how long to keep writing what is buffered before counting it lost.'),
  })
  .refine((c) => (c.username === undefined) === (c.password === undefined), {
    message: 'username and password go together',
    path: ['password'],
  })
  .prefault({});
export type InfluxConfig = z.infer<typeof influxConfigSchema>;

/**
 * Whether bodies to and from InfluxDB are gzipped (`influx.gzip`). On this host compression only costs CPU on
 * both sides: a city's cold attainment read cost influxd a third more CPU gzipped (docs/scale.md).
 */
export function compresses(c: Pick<InfluxConfig, 'url' | 'gzip'>): boolean {
  if (c.gzip !== 'auto') return c.gzip === 'always';
  // URL keeps IPv6 brackets and writes an IPv4-mapped address in hex (::ffff:127.0.0.1 is [::ffff:7f00:1]).
  const host = new URL(c.url).hostname.replace(/\.$/, '');
  const loopback =
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    host.startsWith('127.') ||
    host === '[::1]' ||
    /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(host);
  return !loopback;
}
