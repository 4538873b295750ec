import type { Logger } from 'pino';
import { redactUrl } from '../redact.js';
import type { InfluxConfig } from './config.js';
import { StorageError } from './errors.js';
import { quoteIdent } from './influxql.js';
import type { QueryClient } from './query.js';

/**
 * Start-up (README.md, "Start-up"): which server answers and which write endpoint it takes, then that the
 * database (or bucket) and the retention policy exist — on 1.x a missing database is created. Each failure is a
 * StorageError that says what to fix.
 */

export interface ServerInfo {
  /** As reported by /ping, e.g. `1.6.7~rc0`, `v2.7.11`, `3.1.0`. */
  version: string;
  major: number;
  minor: number;
  /** Which write endpoint is used. */
  writeApi: 'v1' | 'v2';
}

export function parseVersion(v: string): { major: number; minor: number } {
  const m = /^v?(\d+)\.(\d+)/.exec(v.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : { major: 0, minor: 0 };
}

/**
 * Pings and picks the write API: `/write` on 1.x older than 1.8 (or when `writeApi: v1` forces it), else
 * `/api/v2/write`.
 */
export async function detectServer(client: QueryClient, config: InfluxConfig): Promise<ServerInfo> {
  const version = await client.ping();
  const { major, minor } = parseVersion(version);
  const legacy = config.writeApi === 'v1' || (config.writeApi === 'auto' && major === 1 && minor < 8);
  return { version, major, minor, writeApi: legacy ? 'v1' : 'v2' };
}

/** Checks the database and retention policy; on 1.x creates a missing database when `createDatabase` is on. */
export async function ensureDatabase(
  client: QueryClient,
  config: InfluxConfig,
  info: ServerInfo,
  log: Logger,
): Promise<void> {
  const { database, retentionPolicy, createDatabase } = config;
  const url = redactUrl(config.url);
  const major = info.major;
  const [series = []] = await client.query('SHOW DATABASES', { database: null }).catch((err: unknown) => {
    if (err instanceof StorageError && err.code === 'CFM_STORAGE_AUTH') {
      throw new StorageError(
        'CFM_STORAGE_AUTH',
        `${err.message} — check influx.token or influx.username/password`,
      );
    }
    throw err;
  });
  const names = new Set(series.flatMap((s) => s.values.map((v) => String(v[0]))));
  if (!names.has(database)) {
    if (major !== 1 || !createDatabase) {
      throw new StorageError(
        'CFM_STORAGE_NO_DATABASE',
        major === 1
          ? `InfluxDB at ${url} has no database ${JSON.stringify(database)} and influx.createDatabase is false`
          : `InfluxDB ${info.version} at ${url} has no bucket ${JSON.stringify(database)} visible to this token: ` +
              `create it (influx bucket create -n ${database}) and give the token read/write on it`,
      );
    }
    await client.query(`CREATE DATABASE ${quoteIdent(database)}`, { database: null });
    log.info({ database }, 'created database');
  }
  if (retentionPolicy && major === 1) {
    const [rps = []] = await client.query(`SHOW RETENTION POLICIES ON ${quoteIdent(database)}`, {
      database: null,
    });
    const have = new Set(rps.flatMap((s) => s.values.map((v) => String(v[0]))));
    if (!have.has(retentionPolicy)) {
      throw new StorageError(
        'CFM_STORAGE_NO_DATABASE',
        `database ${JSON.stringify(database)} has no retention policy ${JSON.stringify(retentionPolicy)}`,
      );
    }
  }
}
