import { z } from 'zod';
import { redactUrl, scrubError, scrubText } from '../redact.js';
import { compresses, type InfluxConfig } from './config.js';
import { StorageError } from './errors.js';

/**
 * The read side: InfluxQL over `/query`, which 1.x speaks natively and 2.x/3.x through their v1 compatibility
 * API (on 2.x every bucket has a virtual DBRP mapping, so the bucket name is the database); and `/ping`, which
 * says what server answers.
 */

export interface Series {
  name: string;
  tags: Record<string, string>;
  columns: string[];
  values: unknown[][];
  /**
   * InfluxDB says the series was cut short: by the server's `[http] max-row-limit`, or (InfluxDB before 1.7.8, a
   * mislabel) a complete series of more than one internal chunk (10,000 rows). A reader whose series are
   * smaller than that may take it as truncation.
   */
  partial?: boolean;
}

const queryResponseSchema = z.object({
  results: z
    .array(
      z.object({
        statement_id: z.number().optional(),
        error: z.string().optional(),
        partial: z.boolean().optional(),
        series: z
          .array(
            z.object({
              name: z.string().default(''),
              partial: z.boolean().optional(),
              tags: z.record(z.string(), z.string()).optional(),
              columns: z.array(z.string()),
              // Rows checked in place, not copied: zod's arrays rebuild every row, 5× the JSON parse itself for
              // a rollup's 400,000-row answer (#18).
              values: z
                .custom<unknown[][]>((v) => Array.isArray(v) && v.every((row) => Array.isArray(row)), {
                  error: 'values must be an array of rows',
                })
                .optional(),
            }),
          )
          .optional(),
      }),
    )
    .optional(),
  error: z.string().optional(),
});

/** The HTTP client of `/ping` and `/query`, with the configured credentials. */
export class QueryClient {
  /** Headers of every query beyond its credentials: fetch asks for a gzipped reply unless told otherwise. */
  private readonly queryHeaders: Record<string, string>;

  constructor(private readonly config: InfluxConfig) {
    this.queryHeaders = {
      'content-type': 'application/x-www-form-urlencoded',
      ...(compresses(config) ? {} : { 'accept-encoding': 'identity' }),
    };
  }

  private authHeaders(): Record<string, string> {
    const c = this.config;
    if (c.token) return { authorization: `Token ${c.token}` };
    if (c.username !== undefined) {
      return {
        authorization: `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`,
      };
    }
    return {};
  }

  /** GET /ping: resolves with the server version; throws a StorageError when unreachable or refused. */
  async ping(): Promise<string> {
    const url = new URL('/ping', this.config.url);
    let res: Response;
    try {
      res = await fetch(url, {
        headers: this.authHeaders(),
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
    } catch (err) {
      throw new StorageError(
        'CFM_STORAGE_UNREACHABLE',
        `InfluxDB at ${redactUrl(this.config.url)} is unreachable: ${describe(err)}`,
        // fetch quotes the URL it refused, credentials included
        { cause: scrubError(err) },
      );
    }
    await res.arrayBuffer().catch(() => undefined);
    if (res.status === 401 || res.status === 403) {
      throw new StorageError(
        'CFM_STORAGE_AUTH',
        `InfluxDB at ${redactUrl(this.config.url)} refused /ping (${res.status}): check influx.token`,
      );
    }
    const version = res.headers.get('x-influxdb-version');
    if (!res.ok || !version) {
      throw new StorageError(
        'CFM_STORAGE_UNREACHABLE',
        `${redactUrl(url.href)} answered ${res.status} without X-Influxdb-Version: is influx.url an InfluxDB server?`,
      );
    }
    return version;
  }

  /** Runs InfluxQL statements (separated by `;`); one array of series per statement. Throws on any error. */
  async query(q: string, opts: { database?: string | null } = {}): Promise<Series[][]> {
    const form = new URLSearchParams({ q, epoch: 'ms' });
    const db = opts.database === undefined ? this.config.database : opts.database;
    if (db) form.set('db', db);
    if (db && this.config.retentionPolicy) form.set('rp', this.config.retentionPolicy);
    let res: Response;
    try {
      res = await fetch(new URL('/query', this.config.url), {
        method: 'POST',
        headers: { ...this.authHeaders(), ...this.queryHeaders },
        body: form,
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
    } catch (err) {
      throw new StorageError('CFM_STORAGE_UNREACHABLE', `InfluxDB query failed: ${describe(err)}`, {
        cause: scrubError(err),
      });
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      // The headers came, the rest did not within timeoutMs (or the connection broke mid-reply).
      throw new StorageError(
        'CFM_STORAGE_UNREACHABLE',
        `InfluxDB did not finish its answer to a query: ${describe(err)}`,
        { cause: scrubError(err) },
      );
    }
    if (res.status === 401 || res.status === 403) {
      throw new StorageError(
        'CFM_STORAGE_AUTH',
        `InfluxDB refused the query (${res.status}): ${text.trim().slice(0, 200)}`,
      );
    }
    let body: z.infer<typeof queryResponseSchema>;
    try {
      body = queryResponseSchema.parse(JSON.parse(text));
    } catch {
      throw new StorageError(
        'CFM_STORAGE_QUERY',
        `InfluxDB answered ${res.status} with an unreadable body: ${text.slice(0, 200)}`,
      );
    }
    if (body.error) throw new StorageError('CFM_STORAGE_QUERY', `${body.error} (in: ${q.slice(0, 300)})`);
    return (body.results ?? []).map((r) => {
      if (r.error) throw new StorageError('CFM_STORAGE_QUERY', `${r.error} (in: ${q.slice(0, 300)})`);
      // A statement answered in part would be counted as if whole: refused. (A series' own flag is passed on.)
      if (r.partial)
        throw new StorageError(
          'CFM_STORAGE_QUERY',
          `InfluxDB answered only part of a statement (in: ${q.slice(0, 300)})`,
        );
      return (r.series ?? []).map((s) => ({
        name: s.name,
        tags: s.tags ?? {},
        columns: s.columns,
        values: s.values ?? [],
        ...(s.partial && { partial: true }),
      }));
    });
  }

  /** The first statement's rows as objects, each with its series' tags merged in. */
  async rows(q: string): Promise<Record<string, unknown>[]> {
    const [first = []] = await this.query(q);
    const out: Record<string, unknown>[] = [];
    for (const s of first) {
      for (const v of s.values) {
        const row: Record<string, unknown> = { ...s.tags };
        s.columns.forEach((c, i) => {
          row[c] = v[i];
        });
        out.push(row);
      }
    }
    return out;
  }
}

function describe(err: unknown): string {
  const e = err as { cause?: { code?: string; message?: string }; message?: string; name?: string };
  if (e?.name === 'TimeoutError') return 'timed out';
  return scrubText(e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err));
}
