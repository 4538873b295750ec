import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { Influxd, testStorage, waitFor } from '../../helpers/influx.js';

/**
 * InfluxDB goes away in the middle of a stream and comes back: every point must arrive exactly once.
 * Points carry a unique `seq` and timestamp; "exactly once" is checked as count == N and the set of stored
 * seqs == 0..N-1 (a duplicate write of the same point lands on the same series and time, so a duplicate or a
 * loss would show up as a wrong count or a missing seq).
 */
describe('storage through an InfluxDB outage', () => {
  const influxd = new Influxd();
  afterAll(async () => {
    await influxd.dispose();
  });

  it('buffers while influxd is down and delivers every point exactly once after it restarts', async () => {
    await influxd.start();
    const { storage } = testStorage(influxd.url, {
      database: 'outage',
      batchSize: 200,
      flushIntervalMs: 20,
      minRetryDelayMs: 100,
      maxRetryDelayMs: 500,
      timeoutMs: 2_000,
    });
    await storage.start();
    const N = 6_000;
    const t0 = Date.UTC(2026, 10, 23, 8, 0, 0);
    let seq = 0;
    const send = (n: number) => {
      const points = [];
      for (let i = 0; i < n; i++, seq++) {
        points.push({
          measurement: 'host' as const,
          tags: { school: `S${seq % 17}`, device: `d${seq % 5}` },
          fields: { uptime_s: seq, cpu_pct: (seq % 1000) / 10 },
          ts: t0 + seq,
        });
      }
      storage.write(points);
    };
    const stream = async (until: number) => {
      while (seq < until) {
        send(50);
        await new Promise((r) => setTimeout(r, 2));
      }
    };

    await stream(2_000);
    await influxd.stop(); // in the middle of the stream; some requests are in flight
    await stream(4_000);
    await waitFor(() => storage.stats().retriedLines > 0, {
      what: 'a failed write to be scheduled for retry',
    });
    expect(storage.stats().pendingLines).toBeGreaterThan(0);
    await influxd.start(); // same data folder and port
    await stream(N);
    await storage.drain(60_000);

    const s = storage.stats();
    expect(s.acceptedLines).toBe(N);
    expect(s.writtenLines).toBe(N);
    expect(Object.values(s.droppedLines).every((v) => v === 0)).toBe(true);
    expect(s.retriedLines).toBeGreaterThan(0);

    const [count] = await storage.rows('SELECT count(uptime_s) FROM host');
    expect(count?.count).toBe(N);
    const rows = await storage.rows('SELECT uptime_s FROM host');
    const seqs = rows.map((r) => r.uptime_s as number).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: N }, (_, i) => i));
    await storage.stop();
  });

  // Each request is one record to the client library, which bounds its retry buffer in records: the storage
  // bounds the lines itself. Small requests fill it up to the bound, large ones do not pass it.
  it('holds at most maxBufferLines lines for retry: a failing request past it is dropped, counted and abandoned', async () => {
    const influxd = new Influxd();
    onTestFinished(() => influxd.dispose());
    await influxd.start();
    const { storage } = testStorage(influxd.url, {
      database: 'overflow',
      batchSize: 1_000,
      maxBufferLines: 3_000,
      flushIntervalMs: 10,
      minRetryDelayMs: 60_000, // nothing is retried during the test: the buffer only fills
      maxRetryDelayMs: 60_000,
      timeoutMs: 2_000,
    });
    await storage.start();
    const abandoned: number[] = [];
    storage.addWriteListener({ settled: () => {}, abandoned: (_r, n) => abandoned.push(n) });
    await influxd.stop();
    const t0 = Date.UTC(2026, 10, 23, 8, 0, 0);
    let requests = 0;
    let lines = 0;
    const request = async (n: number) => {
      storage.write(
        Array.from({ length: n }, (_, i) => ({
          measurement: 'host' as const,
          tags: { school: 'S1', device: `d${requests}` },
          fields: { uptime_s: i },
          ts: t0 + lines + i,
        })),
      );
      requests++;
      lines += n;
      await storage.flush();
      // Each request fails once (refused), and is then held for a retry a minute away, or dropped.
      await waitFor(() => storage.stats().retriedLines + storage.stats().droppedLines.overflow >= lines, {
        what: `request ${requests} to fail`,
      });
    };
    // Small requests are held up to the bound in lines, not cut at a count of requests.
    for (let k = 0; k < 40; k++) await request(10);
    expect(storage.stats()).toMatchObject({ pendingLines: 400, droppedLines: { overflow: 0 } });
    // Then 1,000-line requests: two more fit under 3,000 lines; the six after them are dropped whole.
    for (let k = 0; k < 8; k++) await request(1_000);
    const s = storage.stats();
    expect(s.pendingLines).toBe(2_400);
    expect(s.droppedLines.overflow).toBe(6_000);
    expect(abandoned.reduce((a, b) => a + b, 0)).toBe(s.droppedLines.overflow);
    await influxd.start();
    await storage.stop();
  });
});
