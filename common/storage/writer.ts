import { InfluxDB, setLogger, type WriteApi, type WriteOptions } from '@influxdata/influxdb-client';
import type { Logger } from 'pino';
import type { AnyPoint } from '../../contracts/influx.js';
import { redactUrl } from '../redact.js';
import { compresses, type InfluxConfig } from './config.js';
import { StorageError } from './errors.js';
import { encodePoint, LineBuffer } from './line-protocol.js';
import { StorageTransport } from './transport.js';
import { classifyWriteError, offendingLines, type WriteAction } from './write-errors.js';

/**
 * The write side (README.md, "Batches and the completion signal" and "Write failures"): points become lines,
 * lines are batched, and the batches go through `@influxdata/influxdb-client`'s WriteApi (retries with
 * exponential back-off and jitter, gzip) to `/api/v2/write`, or on 1.x older than 1.8 to `/write` through
 * `StorageTransport`. Failures are classified (write-errors.ts): 429/5xx/network are retried, honouring
 * Retry-After; 413 splits the batch; other 4xx drop and count with the offending line logged; 401/403/404 are
 * fatal. Listeners learn which lines are settled, so the collector can acknowledge them.
 */

export type DropReason =
  | Extract<WriteAction, { kind: 'drop' }>['reason']
  | 'fatal'
  | 'overflow'
  | 'shutdown'
  | 'invalid_point';

export interface StorageStats {
  /** Lines handed to write(). */
  acceptedLines: number;
  /** Lines InfluxDB acknowledged. */
  writtenLines: number;
  /** Lines whose write failed and was scheduled again (a line retried twice counts twice). */
  retriedLines: number;
  droppedLines: Record<DropReason, number>;
  /** Accepted but neither written nor dropped: in the write buffer, in flight or waiting for a retry. */
  pendingLines: number;
  batchesWritten: number;
  splitBatches: number;
  /** Every HTTP write request: count, total and max duration. */
  writeRequests: { count: number; totalMs: number; maxMs: number; lastStatus?: number | undefined };
}

export interface WriterDeps {
  log: Logger;
  /** Called once when InfluxDB refuses the credentials or the database is gone: the owner should stop. */
  onFatal?: (err: StorageError) => void;
  /** Every HTTP write request, for the owner's latency histogram. */
  onWriteRequest?: (durationMs: number, status: number | undefined) => void;
}

/**
 * Told when accepted lines are settled: written, or dropped because InfluxDB will never take them. The
 * collector acknowledges MQTT messages from this (collector/README.md, "Acknowledged after the write").
 */
export interface WriteListener {
  /**
   * Every line accepted before position `through` (see `Storage.position()`) is settled: written, or dropped
   * because InfluxDB refused it for good (400/422 rejected, a single line over the body limit — retrying a
   * poison line forever would block everything behind it).
   */
  settled(through: number): void;
  /**
   * Lines were given up without being written (`fatal`: 401/403/404; `expired`: retried for longer than
   * `maxRetryTimeMs`; `overflow`: the retry buffer was full). Called before `settled` moves past them, so an
   * owner that must not treat them as written (the collector: no PUBACK) can act first.
   */
  abandoned(reason: DropReason, lines: number): void;
}

/** Lines accepted between two seals: positions [start, end). Settled when `pending` reaches 0. */
interface Batch {
  start: number;
  end: number;
  pending: number;
}

/**
 * One request's lines, encoded once into `body` (UTF-8, joined by line breaks). The WriteApi is handed a short
 * `token` as the request's only record, and StorageTransport sends the body the token names: the library
 * neither copies nor measures each line (its per-line UTF-8 count was 8–11 % of the collector's CPU, #18), and
 * no request-sized string is ever built (joining a request's lines into one string was another 20 %: V8's
 * `Array.prototype.join` and large strings cost about 2 µs a line, encoding into a buffer 0.1 µs). The library
 * names the token's one-element array in every callback, on every retry.
 */
interface Chunk {
  token: string;
  body: Buffer;
  lines: number;
  batch: Batch;
  /** Failed and waiting in the library's retry buffer (or being retried): counted in `retryingLines`. */
  retrying?: boolean;
}

/**
 * A chunk's record: a line-protocol comment, so that even if it ever reached InfluxDB in place of its body it
 * would store nothing.
 */
const TOKEN_PREFIX = '#cfm-chunk ';

/** The writer's encoding buffer: its first size, and the size past which a mostly unused one is let go. */
const SCRATCH_START = 1 << 16;
const SCRATCH_KEEP = 1 << 22;

/**
 * `from[0, n)` copied into a Buffer of its own memory (not a slice of Node's shared pool), so the transport can
 * hand the library its ArrayBuffer and the request is sent without another copy (transport.ts).
 */
function exact(from: Buffer, n: number): Buffer {
  const out = Buffer.allocUnsafeSlow(n);
  from.copy(out, 0, 0, n);
  return out;
}

/**
 * A body cut after its first `n` lines, 0 < n < its line count: lines are separated by single breaks and hold
 * none (Storage.writeLines refuses one), so the `n`th break ends the first part. Views of the body, not copies.
 */
function cutAfterLines(body: Buffer, n: number): [Buffer, Buffer] {
  let at = -1;
  for (let i = 0; i < n; i++) at = body.indexOf(0x0a, at + 1);
  return [body.subarray(0, at), body.subarray(at + 1)];
}

/** The write pipeline behind `Storage.write()`: one per storage, started once the server is known. */
export class StorageWriter {
  private influx: InfluxDB | undefined;
  private writeApi: WriteApi | undefined;
  /**
   * Our own write buffer. The WriteApi is used as a sender with retries only: every chunk we give it is sent
   * as one request (its `batchSize` is ours and we flush right after each chunk), so its callbacks name a
   * chunk we know — the per-batch completion signal the collector's acknowledgements need. A 413 split goes
   * back through the same WriteApi as two smaller chunks: no WriteApi is created per split.
   *
   * The open batch is encoded as it is written (UTF-8 lines separated by breaks): its full chunks, and the chunk
   * being filled in `open.buf[0, open.at)`. A point is encoded straight into it, never a line string (#18: lines
   * held until the batch was sealed survived scavenges and were copied and promoted; then their building and
   * flattening were the largest part of the collector's allocations).
   */
  private openChunks: { body: Buffer; lines: number }[] = [];
  private readonly open = new LineBuffer(SCRATCH_START);
  private openChunkLines = 0;
  private openLines = 0;
  private openStart = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  /** Sealed batches not yet settled, oldest first. */
  private readonly batches: Batch[] = [];
  /** Chunks handed to the WriteApi and not yet settled, by token. */
  private readonly chunks = new Map<string, Chunk>();
  private nextToken = 0;
  private settledThrough_ = 0;
  /** Lines of the chunks in retry (`Chunk.retrying`): bounded by `maxBufferLines`. */
  private retryingLines = 0;
  private readonly listeners = new Set<WriteListener>();
  private fatal: StorageError | undefined;
  private readonly stats_: StorageStats = {
    acceptedLines: 0,
    writtenLines: 0,
    retriedLines: 0,
    droppedLines: {
      rejected: 0,
      too_large: 0,
      expired: 0,
      fatal: 0,
      overflow: 0,
      shutdown: 0,
      invalid_point: 0,
    },
    pendingLines: 0,
    batchesWritten: 0,
    splitBatches: 0,
    writeRequests: { count: 0, totalMs: 0, maxMs: 0 },
  };

  constructor(
    private readonly config: InfluxConfig,
    private readonly deps: WriterDeps,
  ) {}

  /** Where InfluxDB is, for messages: `influx.url` with its credentials redacted. */
  private get where(): string {
    return redactUrl(this.config.url);
  }

  stats(): StorageStats {
    const s = this.stats_;
    // A point toLine refused was never accepted: it is counted as dropped, not subtracted from what is pending.
    const dropped = Object.values(s.droppedLines).reduce((a, b) => a + b, 0) - s.droppedLines.invalid_point;
    return structuredClone({ ...s, pendingLines: s.acceptedLines - s.writtenLines - dropped });
  }

  /** Creates the WriteApi for the endpoint start-up picked (bootstrap.ts); from then on lines are accepted. */
  start(writeApi: 'v1' | 'v2'): void {
    const c = this.config;
    const legacy = writeApi === 'v1';
    const log = this.deps.log;
    setLogger({
      error: (message, err) => log.debug({ err }, `influxdb-client: ${message}`),
      warn: (message, err) => log.debug({ err }, `influxdb-client: ${message}`),
    });
    // On 1.8+ /api/v2/write takes `username:password` as the token.
    const token =
      c.token ?? (!legacy && c.username !== undefined ? `${c.username}:${c.password}` : undefined);
    const base = new InfluxDB({ url: c.url, timeout: c.timeoutMs, ...(legacy || !token ? {} : { token }) });
    const transport = new StorageTransport(
      base.transport,
      legacy ? { username: c.username, password: c.password } : undefined,
      ({ path, status, durationMs }) => {
        if (!path.startsWith('/write') && !path.startsWith('/api/v2/write')) return;
        const r = this.stats_.writeRequests;
        r.count++;
        r.totalMs += durationMs;
        r.maxMs = Math.max(r.maxMs, durationMs);
        r.lastStatus = status;
        this.deps.onWriteRequest?.(durationMs, status);
      },
      (record) => this.chunks.get(record)?.body,
    );
    this.influx = new InfluxDB({ url: c.url, timeout: c.timeoutMs, transport });
    this.writeApi = this.newWriteApi();
  }

  /** The client library gzips bodies above the threshold; "never" is a threshold no batch reaches. */
  private gzipThreshold(): number {
    return compresses(this.config) ? this.config.gzipThreshold : Number.MAX_SAFE_INTEGER;
  }

  private bucket(): string {
    const { database, retentionPolicy } = this.config;
    return retentionPolicy ? `${database}/${retentionPolicy}` : database;
  }

  private newWriteApi(): WriteApi {
    const c = this.config;
    const options: Partial<WriteOptions> = {
      // A chunk is one record, flushed as soon as it is handed over, so the WriteApi's own buffer never merges
      // chunks (it never fills and sends on its own; no interval, no byte limit of its own).
      batchSize: 2,
      flushInterval: 0,
      maxBatchBytes: Number.MAX_SAFE_INTEGER,
      // The library counts records (one per request); maxBufferLines is enforced in lines in onWriteFailed. A
      // request is at least one line, so the library's bound is never reached before ours.
      maxBufferLines: c.maxBufferLines,
      maxRetries: Number.MAX_SAFE_INTEGER, // bounded by maxRetryTime instead of a count
      maxRetryTime: c.maxRetryTimeMs,
      minRetryDelay: c.minRetryDelayMs,
      maxRetryDelay: c.maxRetryDelayMs,
      retryJitter: c.retryJitterMs,
      exponentialBase: 2,
      gzipThreshold: this.gzipThreshold(),
      writeSuccess: (records) => {
        const chunk = this.chunkOf(records);
        if (!chunk) return;
        this.stats_.writtenLines += chunk.lines;
        this.stats_.batchesWritten++;
        this.settle(chunk);
      },
      writeRetrySkipped: (entry) => {
        const chunk = this.chunkOf(entry.lines);
        if (!chunk) return;
        this.stats_.droppedLines.overflow += chunk.lines;
        this.deps.log.error(
          { dropped: chunk.lines, maxBufferLines: c.maxBufferLines },
          'retry buffer full: lines dropped',
        );
        this.settle(chunk, 'overflow');
      },
      writeFailed: (error, records) => this.onWriteFailed(error, records),
    };
    return this.influx!.getWriteApi(this.config.org || '-', this.bucket(), 'ms', options);
  }

  /**
   * Hands lines to the WriteApi as one request; `batch` settles when all its chunks have. Resolves when
   * InfluxDB has them or they are scheduled for retry.
   */
  private send(body: Buffer, lines: number, batch: Batch): Promise<void> {
    if (!this.writeApi) {
      // A 413 answered after stop() gave up: nothing can send the halves any more.
      this.stats_.droppedLines.shutdown += lines;
      batch.pending -= lines;
      return Promise.resolve();
    }
    const chunk: Chunk = { token: TOKEN_PREFIX + this.nextToken++, body, lines, batch };
    this.chunks.set(chunk.token, chunk);
    const api = this.writeApi!;
    api.writeRecord(chunk.token);
    return api.flush().catch(() => {});
  }

  /** Appends one line to the open chunk (no line holds a break: Storage.writeLines refuses one). */
  private encode(line: string): void {
    if (this.openChunkLines > 0) this.open.byte(0x0a);
    this.open.text(line);
    this.lineAdded();
  }

  private lineAdded(): void {
    this.openChunkLines++;
    this.openLines++;
    if (this.openChunkLines >= this.config.batchSize) this.cutChunk();
  }

  /** The open chunk, copied out at its size. */
  private cutChunk(): void {
    if (this.openChunkLines === 0) return;
    const open = this.open;
    const bytes = open.at;
    this.openChunks.push({ body: exact(open.buf, bytes), lines: this.openChunkLines });
    open.at = 0;
    this.openChunkLines = 0;
    // A very long line grew the buffer: it is not kept that large for the life of the process (a chunk of
    // ordinary lines that needed most of it keeps it).
    if (open.buf.length > SCRATCH_KEEP && open.buf.length > 4 * bytes)
      open.buf = Buffer.allocUnsafeSlow(SCRATCH_START);
  }

  /** The lines of a chunk's body, for the rare path that needs them one by one (a rejection's offending line). */
  private linesOf(chunk: Chunk): string[] {
    return chunk.body.toString('utf8').split('\n');
  }

  /** The chunk a WriteApi callback names: its array holds our token (the same array on every attempt). */
  private chunkOf(records: string[]): Chunk | undefined {
    const chunk = records.length === 1 ? this.chunks.get(records[0]!) : undefined;
    if (!chunk) {
      this.deps.log.error(
        { records: records.length },
        'storage: a write callback for an unknown chunk (bug)',
      );
      return undefined;
    }
    return chunk;
  }

  /** A chunk's lines are done with (written or dropped); `abandoned` says they were given up. */
  private settle(chunk: Chunk, abandoned?: DropReason): void {
    this.chunks.delete(chunk.token);
    this.release(chunk);
    if (abandoned) for (const l of this.listeners) l.abandoned(abandoned, chunk.lines);
    chunk.batch.pending -= chunk.lines;
    this.advance();
  }

  /** The chunk is no longer waiting for a retry. */
  private release(chunk: Chunk): void {
    if (!chunk.retrying) return;
    chunk.retrying = false;
    this.retryingLines -= chunk.lines;
  }

  /** Moves the settled position past every leading batch that has settled. */
  private advance(): void {
    let moved = false;
    while (this.batches.length > 0 && this.batches[0]!.pending <= 0) {
      this.batches.shift();
      moved = true;
    }
    if (!moved) return;
    this.settledThrough_ = this.batches[0]?.start ?? this.openStart;
    for (const l of this.listeners) l.settled(this.settledThrough_);
  }

  /** The WriteApi's failure hook: returning a promise means "handled, do not retry"; undefined lets it retry. */
  private onWriteFailed(error: Error, records: string[]): Promise<void> | undefined {
    const chunk = this.chunkOf(records);
    if (!chunk) return Promise.resolve();
    const action = classifyWriteError(error, chunk.lines);
    const log = this.deps.log;
    switch (action.kind) {
      case 'retry': {
        if (!chunk.retrying) {
          // maxBufferLines in lines: a failing request that would pass it is dropped, not held.
          if (this.retryingLines + chunk.lines > this.config.maxBufferLines) {
            this.stats_.droppedLines.overflow += chunk.lines;
            log.error(
              { dropped: chunk.lines, maxBufferLines: this.config.maxBufferLines },
              'retry buffer full: lines dropped',
            );
            this.settle(chunk, 'overflow');
            return Promise.resolve();
          }
          chunk.retrying = true;
          this.retryingLines += chunk.lines;
        }
        if (action.retryAfterMs !== undefined) {
          // The library reads Retry-After seconds as milliseconds; give it the right number.
          const ms = action.retryAfterMs;
          (error as { retryAfter?: () => number }).retryAfter = () => ms;
        }
        this.stats_.retriedLines += chunk.lines;
        log.warn(
          { lines: chunk.lines, why: action.why, retryAfterMs: action.retryAfterMs },
          'write failed; will retry',
        );
        return undefined;
      }
      case 'split': {
        this.release(chunk);
        this.chunks.delete(chunk.token);
        this.stats_.splitBatches++;
        const first = Math.ceil(chunk.lines / 2);
        log.warn({ lines: chunk.lines, half: first, why: action.why }, 'batch too large (413): splitting');
        // Both halves go through the same WriteApi (its retries, its back-off); the batch settles when they have.
        // The body is cut after its first half's lines, as it is: nothing decoded, nothing encoded again.
        const [head, tail] = cutAfterLines(chunk.body, first);
        this.send(head, first, chunk.batch);
        this.send(tail, chunk.lines - first, chunk.batch);
        return Promise.resolve();
      }
      case 'drop': {
        const n = action.dropped ?? chunk.lines;
        this.stats_.droppedLines[action.reason] += n;
        if (n < chunk.lines) this.stats_.writtenLines += chunk.lines - n; // a partial write stored the rest
        log.error(
          {
            dropped: n,
            reason: action.reason,
            why: action.why,
            offending: offendingLines(action.why, this.linesOf(chunk)),
          },
          'InfluxDB rejected points: dropped',
        );
        // Rejected or too large: the data itself is refused, retrying cannot help. Expired: given up.
        this.settle(chunk, action.reason === 'expired' ? 'expired' : undefined);
        return Promise.resolve();
      }
      case 'fatal': {
        this.stats_.droppedLines.fatal += chunk.lines;
        const err = new StorageError(
          action.status === 404 ? 'CFM_STORAGE_NO_DATABASE' : 'CFM_STORAGE_AUTH',
          action.status === 404
            ? `InfluxDB at ${this.where} has no database/bucket ${JSON.stringify(this.bucket())}: ${action.why}`
            : `InfluxDB at ${this.where} refused the write (${action.status}): ${action.why} — check influx.token or influx.username/password and their write permission`,
        );
        log.fatal({ err, dropped: chunk.lines }, 'storage cannot write');
        if (!this.fatal) {
          this.fatal = err;
          this.deps.onFatal?.(err);
        }
        this.settle(chunk, 'fatal');
        return Promise.resolve();
      }
    }
  }

  /** Queues points. Never throws for bad data: a point that does not fit the schema is counted and logged. */
  write(points: readonly AnyPoint[]): void {
    if (!this.writeApi) throw new Error('storage not started');
    const open = this.open;
    let accepted = 0;
    for (const p of points) {
      const mark = open.at;
      if (this.openChunkLines > 0) open.byte(0x0a);
      let encoded = false;
      try {
        encoded = encodePoint(p, open);
      } catch (err) {
        this.stats_.droppedLines.invalid_point++;
        this.deps.log.error({ err, measurement: p.measurement }, 'point does not fit the schema: dropped');
      }
      if (!encoded) {
        open.at = mark;
        continue;
      }
      this.lineAdded();
      accepted++;
    }
    this.accepted(accepted);
  }

  /** Queues ready-made line protocol (timestamps in ms). */
  writeLines(lines: readonly string[]): void {
    if (!this.writeApi) throw new Error('storage not started');
    for (const l of lines) this.encode(l);
    this.accepted(lines.length);
  }

  private accepted(lines: number): void {
    if (lines === 0) return;
    this.stats_.acceptedLines += lines;
    if (this.openLines >= this.config.batchSize) this.seal();
    else this.flushTimer ??= setTimeout(() => this.seal(), this.config.flushIntervalMs);
  }

  /**
   * Where the next accepted line goes: every line written before a call to `position()` is settled once a
   * listener's `settled(through)` has `through` ≥ what it returned.
   */
  position(): number {
    return this.stats_.acceptedLines;
  }

  /** Every line accepted before this position is written or dropped for good (see WriteListener). */
  get settledThrough(): number {
    return this.settledThrough_;
  }

  /** The fatal error (401/403/404) once InfluxDB refused a write; undefined while none happened. */
  get fatalError(): StorageError | undefined {
    return this.fatal;
  }

  /** Adds a listener of settled and abandoned lines; returns the function that removes it. */
  addWriteListener(l: WriteListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Closes the current batch and hands it to the WriteApi in chunks of at most batchSize lines. */
  private seal(): Promise<void>[] {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.openLines === 0) return [];
    this.cutChunk();
    const chunks = this.openChunks;
    const batch: Batch = {
      start: this.openStart,
      end: this.openStart + this.openLines,
      pending: this.openLines,
    };
    this.openChunks = [];
    this.openLines = 0;
    this.openStart = batch.end;
    this.batches.push(batch);
    return chunks.map((c) => this.send(c.body, c.lines, batch));
  }

  /** Sends what is buffered now; resolves when InfluxDB has it or it is scheduled for retry. */
  async flush(): Promise<void> {
    await Promise.all(this.seal());
  }

  /**
   * Resolves when nothing is pending (written or dropped), or rejects after `timeoutMs`. Retries keep their
   * schedule (back-off, Retry-After): draining waits for them rather than hurrying them.
   */
  async drain(timeoutMs = this.config.shutdownTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.flush();
      const pending = this.stats().pendingLines;
      if (pending <= 0) return;
      if (Date.now() >= deadline) throw new Error(`${pending} lines still pending after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(0, deadline - Date.now()))));
    }
  }

  /**
   * Flushes everything buffered, waiting up to shutdownTimeoutMs for scheduled retries, then makes one last
   * immediate attempt at what is still waiting; what remains after that is counted as lost and logged.
   */
  async stop(): Promise<void> {
    const api = this.writeApi;
    if (!api) return;
    try {
      await this.drain();
    } catch {
      await this.flush();
      await api.flush(true).catch(() => {});
      const pending = this.stats().pendingLines;
      if (pending > 0) {
        this.stats_.droppedLines.shutdown += pending;
        this.deps.log.error({ lost: pending, url: this.where }, 'storage stopped with unwritten lines');
      }
    }
    api.dispose();
    // dispose() drops the library's retry buffer without a callback: what it held is counted above (shutdown).
    this.chunks.clear();
    this.retryingLines = 0;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.writeApi = undefined;
  }
}
