import type { AnyPoint } from '../../contracts/influx.js';
import { detectServer, ensureDatabase, type ServerInfo } from './bootstrap.js';
import type { InfluxConfig } from './config.js';
import { StorageError } from './errors.js';
import { QueryClient, type Series } from './query.js';
import { type StorageStats, StorageWriter, type WriteListener, type WriterDeps } from './writer.js';

/** Ends a `queryWhole` request: it answers nothing, so its result is there exactly when everything was answered. */
const WHOLE_ANSWER = 'SELECT n FROM late_data WHERE time < 0';

/** What the owner gives the storage: its log, and the write pipeline's hooks (writer.ts). */
export type StorageDeps = WriterDeps;

/**
 * The storage layer: the only code that talks to InfluxDB. The collector writes through it, the API and
 * alerting query through it. This class composes its parts (README.md):
 *
 * - **Start-up** (bootstrap.ts): `/ping`'s `X-Influxdb-Version` header decides the write endpoint (or
 *   `writeApi` forces one); the database is checked, and on 1.x created.
 * - **Writes** (writer.ts) go through `@influxdata/influxdb-client`'s WriteApi (batching, retries with
 *   exponential back-off and jitter, gzip). On InfluxDB 2.x, 3.x and 1.8+ it posts natively to `/api/v2/write`;
 *   on 1.x older than 1.8 the same WriteApi posts to `/write` through `StorageTransport`.
 * - **Queries** (query.ts) are InfluxQL over `/query`, which 1.x speaks natively and 2.x/3.x through their v1
 *   compatibility API (on 2.x every bucket has a virtual DBRP mapping, so the bucket name is the database).
 * - **Failures** are classified (see write-errors.ts): 429/5xx/network are retried, honouring Retry-After;
 *   413 splits the batch; other 4xx drop and count with the offending line logged; 401/403/404 are fatal.
 */
export class Storage {
  private readonly client: QueryClient;
  private readonly writer: StorageWriter;
  private info: ServerInfo | undefined;

  constructor(
    readonly config: InfluxConfig,
    private readonly deps: StorageDeps,
  ) {
    this.client = new QueryClient(config);
    this.writer = new StorageWriter(config, deps);
  }

  get server(): ServerInfo | undefined {
    return this.info;
  }

  stats(): StorageStats {
    return this.writer.stats();
  }

  /** Pings, picks the write API, checks (on 1.x creates) the database. Fails with a message saying what to fix. */
  async start(): Promise<ServerInfo> {
    this.info = await detectServer(this.client, this.config);
    await ensureDatabase(this.client, this.config, this.info, this.deps.log);
    this.writer.start(this.info.writeApi);
    this.deps.log.info({ server: this.info, database: this.config.database }, 'storage ready');
    return this.info;
  }

  // ---- writes (writer.ts) ---------------------------------------------------------------------------------

  /** Queues points. Never throws for bad data: a point that does not fit the schema is counted and logged. */
  write(points: readonly AnyPoint[]): void {
    this.writer.write(points);
  }

  /** Queues ready-made line protocol (timestamps in ms). */
  writeLines(lines: readonly string[]): void {
    // One request is its lines joined by line breaks: a line holding one would be two lines to InfluxDB.
    for (const l of lines) {
      if (l.includes('\n') || l.includes('\r'))
        throw new TypeError(`a line of line protocol holds a line break: ${JSON.stringify(l.slice(0, 80))}`);
    }
    this.writer.writeLines(lines);
  }

  /**
   * Where the next accepted line goes: every line written before a call to `position()` is settled once a
   * listener's `settled(through)` has `through` ≥ what it returned.
   */
  position(): number {
    return this.writer.position();
  }

  /** Every line accepted before this position is written or dropped for good (see WriteListener). */
  get settledThrough(): number {
    return this.writer.settledThrough;
  }

  /** The fatal error (401/403/404) once InfluxDB refused a write; undefined while none happened. */
  get fatalError(): StorageError | undefined {
    return this.writer.fatalError;
  }

  /** Adds a listener of settled and abandoned lines; returns the function that removes it. */
  addWriteListener(l: WriteListener): () => void {
    return this.writer.addWriteListener(l);
  }

  /** Sends what is buffered now; resolves when InfluxDB has it or it is scheduled for retry. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /**
   * Resolves when nothing is pending (written or dropped), or rejects after `timeoutMs` (default
   * `shutdownTimeoutMs`). Retries keep their schedule (back-off, Retry-After): draining waits for them.
   */
  drain(timeoutMs?: number): Promise<void> {
    return this.writer.drain(timeoutMs);
  }

  /**
   * Flushes everything buffered, waiting up to shutdownTimeoutMs for scheduled retries, then makes one last
   * immediate attempt at what is still waiting; what remains after that is counted as lost and logged.
   */
  stop(): Promise<void> {
    return this.writer.stop();
  }

  // ---- queries (query.ts) ---------------------------------------------------------------------------------

  /** GET /ping: resolves with the server version; throws a StorageError when unreachable or refused. */
  ping(): Promise<string> {
    return this.client.ping();
  }

  /** Runs InfluxQL statements (separated by `;`); one array of series per statement. Throws on any error. */
  query(q: string, opts: { database?: string | null } = {}): Promise<Series[][]> {
    return this.client.query(q, opts);
  }

  /**
   * Runs `statements` as one request and requires the whole answer. A server's `[http] max-row-limit` cuts an
   * answer short: it marks the cut series partial, but a cut that falls on a series' end drops the statement's
   * later series and every later statement unmarked — and InfluxDB 1.6 also marks complete series of more than
   * 10,000 rows partial, so the mark alone cannot tell. So a last statement that answers nothing is appended: its
   * result is there exactly when the server answered everything; else a `CFM_STORAGE_QUERY` error naming `what`.
   */
  async queryWhole(statements: string[], what: string): Promise<Series[][]> {
    const results = await this.query([...statements, WHOLE_ANSWER].join('; '));
    if (results.length !== statements.length + 1)
      throw new StorageError(
        'CFM_STORAGE_QUERY',
        `InfluxDB cut ${what} short: is [http] max-row-limit set on the server? It needs 0 (no limit)`,
      );
    return results.slice(0, -1);
  }

  /** The first statement's rows as objects, each with its series' tags merged in. */
  rows(q: string): Promise<Record<string, unknown>[]> {
    return this.client.rows(q);
  }
}
