import { InfluxDB } from '@influxdata/influxdb-client';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import type { StorageError } from '../../../common/storage/errors.js';
import { FaultProxy } from '../../helpers/fault-proxy.js';
import { Influxd, testStorage, waitFor } from '../../helpers/influx.js';

const line = (i: number, pad = 0) =>
  `host,school=s,device=d${i % 7} cpu_pct=${i % 100},uptime_s=${i}i${pad ? `,x="${'y'.repeat(pad)}"` : ''} ${1_788_000_000_000 + i}`;

/** A fault proxy in front of `target`, stopped when the test ends. */
async function faultProxy(target: string): Promise<FaultProxy> {
  const proxy = await new FaultProxy(target).start();
  onTestFinished(() => proxy.stop());
  return proxy;
}

async function count(
  influxd: Influxd,
  db: string,
  what = 'count(uptime_s)',
  from = 'host',
  auth?: { username: string; password: string },
) {
  const r = (await influxd.query(`SELECT ${what} FROM ${from}`, db, auth)) as {
    results: { series?: { values: number[][] }[] }[];
  };
  return r.results[0]?.series?.[0]?.values[0]?.[1] ?? 0;
}

describe('write failures on a real InfluxDB', () => {
  const influxd = new Influxd({ maxBodySize: 20_000 });
  beforeAll(async () => {
    await influxd.start();
  });
  afterAll(async () => {
    await influxd.dispose();
  });

  it('400 partial write: stores the good lines, drops and counts the bad, logs the offending line', async () => {
    const { storage, lines: logs } = testStorage(influxd.url, { database: 'partial', gzip: 'never' });
    await storage.start();
    storage.writeLines([line(1), line(2)]);
    await storage.drain();
    const bad = 'host,school=s,device=bad cpu_pct="not a number" 1788000000099';
    // InfluxDB 1.6 reports either the type conflicts (dropped=N) or the parse errors of a batch, not both, so
    // the two kinds go in separate batches here to check the counts exactly.
    storage.writeLines([line(3), bad]);
    await storage.drain();
    storage.writeLines([line(4), 'garbage without fields']);
    await storage.drain();
    // A request is its lines joined by breaks: a line holding one is refused before anything is queued.
    expect(() => storage.writeLines([line(5), `${line(6)}\n${line(7)}`])).toThrow(/line break/);
    expect(() => storage.writeLines([`${line(8)}\r`])).toThrow(/line break/);
    await storage.drain();
    expect(await count(influxd, 'partial')).toBe(4);
    const s = storage.stats();
    expect(s.droppedLines.rejected).toBe(2);
    expect(s.writtenLines).toBe(4);
    expect(s.pendingLines).toBe(0);
    const offending = logs
      .filter((l) => l.msg === 'InfluxDB rejected points: dropped')
      .map((l) => l.offending);
    expect(offending).toEqual([[bad], ['garbage without fields']]);
    await storage.stop();
  });

  it('413: splits the batch until it fits and loses nothing; a single oversized line is dropped and counted', async () => {
    const { storage } = testStorage(influxd.url, { database: 'split', batchSize: 2_000, gzip: 'never' });
    await storage.start();
    const lines = Array.from({ length: 1_000 }, (_, i) => line(i, 60)); // ~130 kB, limit 20 kB
    storage.writeLines(lines);
    await storage.drain();
    expect(await count(influxd, 'split')).toBe(1_000);
    const s = storage.stats();
    expect(s.splitBatches).toBeGreaterThanOrEqual(7);
    expect(s.writtenLines).toBe(1_000);
    expect(s.droppedLines.too_large).toBe(0);

    storage.writeLines([line(5_000, 30_000)]);
    await storage.drain();
    expect(storage.stats().droppedLines.too_large).toBe(1);
    await storage.stop();
  });

  it('413 under a persistent body limit: no WriteApi per split outlives its lines (one in all)', async () => {
    // Every WriteApi the storage creates, and whether it was released (dispose/close).
    const open = new Set<object>();
    const getWriteApi = InfluxDB.prototype.getWriteApi;
    const spy = vi.spyOn(InfluxDB.prototype, 'getWriteApi').mockImplementation(function (
      this: InfluxDB,
      ...args
    ) {
      const api = getWriteApi.apply(this, args);
      open.add(api);
      const { dispose, close } = api;
      vi.spyOn(api, 'dispose').mockImplementation(() => {
        open.delete(api);
        return dispose.call(api);
      });
      vi.spyOn(api, 'close').mockImplementation(() => {
        open.delete(api);
        return close.call(api);
      });
      return api;
    });
    try {
      const { storage } = testStorage(influxd.url, {
        database: 'split_leak',
        batchSize: 2_000,
        gzip: 'never',
      });
      await storage.start();
      // A proxy's body limit that every batch hits: 20 batches of 400 lines of ~130 bytes, limit 20 kB.
      for (let b = 0; b < 20; b++) {
        storage.writeLines(Array.from({ length: 400 }, (_, i) => line(b * 400 + i, 60)));
        await storage.flush();
      }
      await storage.drain();
      expect(await count(influxd, 'split_leak')).toBe(8_000);
      expect(storage.stats().splitBatches).toBeGreaterThanOrEqual(20 * 3);
      expect(open.size).toBe(1); // the storage's own; before, one more per split, until stop()
      await storage.stop();
      expect(open.size).toBe(0);
    } finally {
      spy.mockRestore();
    }
  });

  it('tells when lines are settled: written, or refused for good (400, a single line over the limit)', async () => {
    const { storage } = testStorage(influxd.url, { database: 'settled', gzip: 'never', batchSize: 50 });
    await storage.start();
    const settled: number[] = [];
    const abandoned: string[] = [];
    storage.addWriteListener({
      settled: (through) => settled.push(through),
      abandoned: (reason) => abandoned.push(reason),
    });
    expect(storage.position()).toBe(0);
    storage.writeLines([line(1), line(2)]);
    const afterGood = storage.position();
    storage.writeLines([line(3), 'host,school=s,device=bad cpu_pct="not a number" 1788000000099']);
    storage.writeLines([line(4, 30_000)]); // one line above the 20 kB body limit: dropped as too large
    const afterBad = storage.position();
    // More than one batch (batchSize 50) and a 413 split: positions still settle in order.
    storage.writeLines(Array.from({ length: 300 }, (_, i) => line(100 + i, 60)));
    const end = storage.position();
    expect([afterGood, afterBad, end]).toEqual([2, 5, 305]);
    await storage.drain();
    expect(storage.settledThrough).toBe(end);
    expect(settled.at(-1)).toBe(end);
    expect(settled).toEqual([...settled].sort((a, b) => a - b));
    expect(abandoned).toEqual([]); // a poison line is settled (dropped and counted), not given up
    expect(storage.stats().droppedLines).toMatchObject({ rejected: 1, too_large: 1 });
    await storage.stop();
  });

  it('a query whose answer stalls (before or after its headers) is a StorageError after timeoutMs, not a raw abort; the next one is served', async () => {
    const proxy = await faultProxy(influxd.url);
    const { storage } = testStorage(proxy.url, { database: 'stall', timeoutMs: 500 });
    try {
      await storage.start();
      storage.writeLines([line(1)]);
      await storage.drain();
      for (const [headers, said] of [
        [true, /did not finish its answer to a query: timed out/],
        [false, /query failed: timed out/],
      ] as const) {
        proxy.stallNext(1, { headers });
        const t = performance.now();
        const err = (await storage.query('SELECT count(uptime_s) FROM host').then(
          () => undefined,
          (e: unknown) => e,
        )) as StorageError | undefined;
        expect(err?.code).toBe('CFM_STORAGE_UNREACHABLE');
        expect(err?.message).toMatch(said);
        // The deadline held: not the proxy's socket timeout, not forever.
        expect(performance.now() - t).toBeLessThan(5_000);
        const [rows] = await storage.query('SELECT count(uptime_s) FROM host');
        expect(rows?.[0]?.values[0]?.[1]).toBe(1);
      }
    } finally {
      await storage.stop();
    }
  });

  it('429/503 are retried honouring Retry-After, and every line arrives', async () => {
    const proxy = await faultProxy(influxd.url);
    const { storage } = testStorage(proxy.url, {
      database: 'retry',
      minRetryDelayMs: 50,
      retryJitterMs: 0,
    });
    await storage.start();
    proxy.failNext(1, 429, { 'retry-after': '1' });
    proxy.failNext(1, 503);
    proxy.failNext(1, 408); // the client library does not retry this one itself; the storage layer does
    storage.writeLines(Array.from({ length: 50 }, (_, i) => line(i)));
    await storage.drain();
    expect(await count(influxd, 'retry')).toBe(50);
    const [first, second] = proxy.writeArrivals;
    // Retry-After: 1 means one second, not one millisecond.
    expect(second! - first!).toBeGreaterThanOrEqual(950);
    expect(proxy.writeArrivals.length).toBe(4);
    expect(storage.stats()).toMatchObject({ retriedLines: 150, writtenLines: 50, pendingLines: 0 });
    await storage.stop();
  });

  it('a point the schema refuses is dropped and counted, and hides no line still pending from drain()', async () => {
    const proxy = await faultProxy(influxd.url);
    const { storage } = testStorage(proxy.url, {
      database: 'refused',
      minRetryDelayMs: 300,
      retryJitterMs: 0,
    });
    await storage.start();
    proxy.failNext(1, 503);
    storage.write([{ measurement: 'no_such', tags: {}, fields: { x: 1 }, ts: 1_788_000_000_000 } as never]);
    storage.writeLines([line(1)]);
    expect(storage.stats()).toMatchObject({ acceptedLines: 1, pendingLines: 1 });
    // Before, the refused point was subtracted from what was pending: drain() returned while the line waited
    // for its retry, and stop() then lost it uncounted.
    await storage.drain();
    expect(await count(influxd, 'refused')).toBe(1);
    expect(storage.stats()).toMatchObject({ writtenLines: 1, pendingLines: 0 });
    expect(storage.stats().droppedLines.invalid_point).toBe(1);
    await storage.stop();
  });

  it('a refused or empty point between others leaves no byte in its chunk: every other line arrives whole', async () => {
    // Points are encoded straight into the open chunk (common/storage/line-protocol.ts encodePoint): the break
    // before a point that turns out refused or without fields is taken back with it. Chunks of 3 lines, so the
    // take-backs fall at a chunk's start, middle and end.
    const proxy = await faultProxy(influxd.url);
    proxy.recordWrites = true;
    const { storage } = testStorage(proxy.url, { database: 'mid-chunk', batchSize: 3, gzip: 'never' });
    await storage.start();
    const host = (i: number, fields: Record<string, unknown>) =>
      ({
        measurement: 'host',
        tags: { school: 's', device: `d${i}` },
        fields,
        ts: 1_788_000_000_000 + i,
      }) as never;
    const refused = { measurement: 'no_such', tags: {}, fields: { x: 1 }, ts: 1 } as never;
    storage.write([host(1, { uptime_s: 1 }), refused, host(2, { cpu_pct: Number.NaN })]);
    storage.write([host(3, { uptime_s: 3 }), host(4, { uptime_s: 4, evil: 1 }), host(5, { uptime_s: 5 })]);
    storage.writeLines([line(6)]);
    storage.write([host(7, { uptime_s: 7 }), host(8, { cpu_pct: Number.POSITIVE_INFINITY }), refused]);
    storage.write([host(9, { uptime_s: 9, mem_total_bytes: 8_589_934_592 })]);
    await storage.drain();
    expect(storage.stats()).toMatchObject({ acceptedLines: 6, writtenLines: 6, pendingLines: 0 });
    expect(storage.stats().droppedLines.invalid_point).toBe(3);
    // Each request's body is its lines and the breaks between them: no empty line, none at either end (a 413
    // split counts breaks to cut a body in two).
    const bodies = proxy.writeBodies.map((b) => b.toString());
    expect(bodies.flatMap((b) => b.split('\n')).map((l) => l.split(' ')[0])).toEqual([
      'host,device=d1,school=s',
      'host,device=d3,school=s',
      'host,device=d5,school=s',
      'host,school=s,device=d6', // line(6), written as given
      'host,device=d7,school=s',
      'host,device=d9,school=s',
    ]);
    const r = (await influxd.query('SELECT uptime_s, mem_total_bytes FROM host', 'mid-chunk')) as {
      results: { series?: { values: (number | string | null)[][] }[] }[];
    };
    expect(r.results[0]?.series?.[0]?.values.map((v) => [v[1], v[2]])).toEqual([
      [1, null],
      [3, null],
      [5, null],
      [6, null],
      [7, null],
      [9, 8_589_934_592],
    ]);
    await storage.stop();
  });

  it('stop() while every write fails counts what it could not write and keeps nothing of it', async () => {
    const proxy = await faultProxy(influxd.url);
    const { storage } = testStorage(proxy.url, {
      database: 'given-up',
      batchSize: 10,
      minRetryDelayMs: 50,
      retryJitterMs: 0,
      shutdownTimeoutMs: 300,
    });
    await storage.start();
    proxy.failNext(10_000, 503);
    storage.writeLines(Array.from({ length: 50 }, (_, i) => line(i)));
    await storage.flush();
    await storage.stop();
    expect(storage.stats().droppedLines.shutdown).toBe(50);
    expect(storage.stats().pendingLines).toBe(0);
    // The library's retry buffer is dropped by dispose() without a callback; the writer lets go of the bodies.
    const writer = (storage as unknown as { writer: { chunks: Map<string, unknown> } }).writer;
    expect(writer.chunks.size).toBe(0);
  });
});

describe('credentials on a real InfluxDB with auth enabled', () => {
  const influxd = new Influxd({ authEnabled: true });
  const admin = { username: 'admin', password: 'adm1n-pw' };
  beforeAll(async () => {
    await influxd.start();
    // The first admin user may be created without credentials.
    await influxd.query(`CREATE USER admin WITH PASSWORD '${admin.password}' WITH ALL PRIVILEGES`);
    await influxd.query(
      "CREATE DATABASE authdb; CREATE USER reader WITH PASSWORD 'r'; GRANT READ ON authdb TO reader; CREATE USER writer WITH PASSWORD 'w'; GRANT ALL ON authdb TO writer",
      undefined,
      admin,
    );
  });
  afterAll(async () => {
    await influxd.dispose();
  });

  it('a wrong password stops start-up with a clear 401 message and keeps the secret out of it', async () => {
    const { storage, lines } = testStorage(influxd.url, {
      database: 'authdb',
      username: 'admin',
      password: 'wrong-secret',
    });
    const err = await storage.start().catch((e: StorageError) => e);
    expect((err as StorageError).code).toBe('CFM_STORAGE_AUTH');
    expect((err as Error).message).toMatch(/401.*check influx/);
    expect(JSON.stringify(lines) + String((err as Error).message)).not.toContain('wrong-secret');
  });

  it('an admin creates the database; a writer writes', async () => {
    const a = testStorage(influxd.url, { database: 'made_by_admin', ...admin }).storage;
    await a.start();
    await a.stop();
    const { storage } = testStorage(influxd.url, { database: 'authdb', username: 'writer', password: 'w' });
    await storage.start();
    storage.writeLines([line(1)]);
    await storage.drain();
    expect(await count(influxd, 'authdb', 'count(uptime_s)', 'host', admin)).toBe(1);
    await storage.stop();
  });

  it('403 (read-only user) and 401 (password changed) on write are fatal and reported once', async () => {
    const fatal: StorageError[] = [];
    const ro = testStorage(
      influxd.url,
      { database: 'authdb', username: 'reader', password: 'r', createDatabase: false },
      {
        onFatal: (e) => fatal.push(e),
      },
    ).storage;
    await ro.start();
    ro.writeLines([line(10)]);
    ro.writeLines([line(11)]);
    await ro.flush();
    ro.writeLines([line(12)]);
    await waitFor(() => ro.stats().droppedLines.fatal === 3, { what: 'three fatal drops' });
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatchObject({ code: 'CFM_STORAGE_AUTH', message: expect.stringContaining('403') });
    await ro.stop();

    const changed: StorageError[] = [];
    const w = testStorage(
      influxd.url,
      { database: 'authdb', username: 'writer', password: 'w' },
      {
        onFatal: (e) => changed.push(e),
      },
    ).storage;
    await w.start();
    await influxd.query("SET PASSWORD FOR writer = 'rotated'", undefined, admin);
    w.writeLines([line(20)]);
    await waitFor(() => changed.length === 1, { what: '401 fatal' });
    expect(changed[0]!.message).toContain('401');
    await w.stop();
  });
});
