import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { compresses, influxConfigSchema } from '../../../common/storage/config.js';
import { StorageError } from '../../../common/storage/errors.js';
import { iql } from '../../../common/storage/influxql.js';
import { QueryClient } from '../../../common/storage/query.js';
import {
  type AnyPoint,
  type FieldType,
  MEASUREMENTS,
  type MeasurementName,
} from '../../../contracts/influx.js';
import { FaultProxy } from '../../helpers/fault-proxy.js';
import { freePort, Influxd, testStorage, waitFor } from '../../helpers/influx.js';

const influxd = new Influxd();
beforeAll(async () => {
  await influxd.start();
});
afterAll(async () => {
  await influxd.dispose();
});

// Tag values that line protocol must escape, and names bureaus really use.
const TRICKY_TAGS = [
  '杭州市 西湖区 实验小学',
  'a,b=c',
  'with "quotes"',
  'back\\slash',
  "it's",
  '第一中学（高中部）',
];

function sampleValue(type: FieldType, i: number): number | string | boolean {
  switch (type) {
    case 'float':
      return 12.5 + i;
    case 'int':
      return 1_000_000_007 + i;
    case 'string':
      return `说明 "${i}", a\\b, x=y`;
    case 'bool':
      return i % 2 === 0;
  }
}

function samplePoint(m: MeasurementName, i: number, ts: number): AnyPoint {
  const def = MEASUREMENTS[m];
  const tags: Record<string, string> = {};
  def.tags.forEach((t, k) => {
    tags[t] = `${TRICKY_TAGS[(i + k) % TRICKY_TAGS.length]}-${t}`;
  });
  const fields: Record<string, unknown> = {};
  Object.entries(def.fields).forEach(([f, type], k) => {
    fields[f] = sampleValue(type, i + k);
  });
  return { measurement: m, tags, fields, ts } as AnyPoint;
}

describe('storage against a real InfluxDB 1.x', () => {
  it('detects the server version, picks /write for 1.x < 1.8 and creates the database', async () => {
    const { storage } = testStorage(influxd.url, { database: 'create_me' });
    const info = await storage.start();
    expect(info.major).toBe(1);
    expect(info.minor).toBeLessThan(8);
    expect(info.writeApi).toBe('v1');
    const dbs = (await influxd.query('SHOW DATABASES')) as {
      results: { series: { values: string[][] }[] }[];
    };
    expect(dbs.results[0]!.series[0]!.values.flat()).toContain('create_me');
    await storage.stop();
  });

  it('round-trips every measurement, every tag and field, with escaping and Chinese names', async () => {
    const { storage } = testStorage(influxd.url, { database: 'roundtrip' });
    await storage.start();
    const base = Date.UTC(2026, 8, 1, 0, 0, 0);
    const names = Object.keys(MEASUREMENTS) as MeasurementName[];
    const points = names.flatMap((m) => [0, 1, 2].map((i) => samplePoint(m, i, base + i * 1000)));
    storage.write(points);
    await storage.drain();
    expect(storage.stats()).toMatchObject({
      acceptedLines: points.length,
      writtenLines: points.length,
      pendingLines: 0,
    });

    for (const m of names) {
      const rows = await storage.rows(`SELECT * FROM "${m}" ORDER BY time`);
      expect(rows, m).toHaveLength(3);
      rows.forEach((row, i) => {
        const expected = samplePoint(m, i, base + i * 1000);
        expect(row.time, m).toBe(expected.ts);
        for (const [t, v] of Object.entries(expected.tags)) expect(row[t], `${m}.${t}`).toBe(v);
        for (const [f, v] of Object.entries(expected.fields)) expect(row[f], `${m}.${f}`).toBe(v);
      });
    }

    // A tag value can be selected exactly with the quoting helper, however odd it is.
    const school = `${TRICKY_TAGS[1]}-school`;
    const hit = await storage.rows(iql`SELECT count(uptime_s) FROM host WHERE school = ${school}`);
    expect(hit[0]?.count).toBe(1);
    await storage.stop();
  });

  it('keeps 64-bit counters and line breaks in strings', async () => {
    const { storage } = testStorage(influxd.url, { database: 'counters' });
    await storage.start();
    storage.write([
      {
        measurement: 'iface',
        tags: { device: 'gw' },
        fields: { in_octets: 9_007_199_254_740_993n },
        ts: 1_788_000_000_000,
      },
      {
        measurement: 'event',
        tags: { device: 'gw' },
        fields: { message: '第一行\n第二行' },
        ts: 1_788_000_000_000,
      },
    ]);
    await storage.drain();
    // InfluxDB's JSON renders int64 as a number; read it back as text to see every digit.
    const r = await fetch(
      `${influxd.url}/query?db=counters&q=${encodeURIComponent('SELECT in_octets FROM iface')}`,
    );
    expect(await r.text()).toContain('9007199254740993');
    const [ev] = await storage.rows('SELECT message FROM event');
    expect(ev?.message).toBe('第一行\\n第二行');
    await storage.stop();
  });

  it("a request body larger than the writer's first buffer, in UTF-8, arrives whole: lines around a 60 KB Chinese message", async () => {
    const { storage } = testStorage(influxd.url, { database: 'wide', batchSize: 10_000 });
    await storage.start();
    // 20,000 CJK characters are 60,000 bytes of UTF-8 (InfluxDB 1.x takes string fields up to 64 KB); with
    // lines before and after it in the same request the body outgrows the writer's 64 KiB start buffer.
    const wide = '班'.repeat(19_999) + '通';
    storage.write(Array.from({ length: 300 }, (_, i) => samplePoint('host', i, 1_788_000_000_000 + i)));
    storage.write([
      { measurement: 'event', tags: { device: 'gw' }, fields: { message: wide }, ts: 1_788_000_000_000 },
    ]);
    storage.write(Array.from({ length: 300 }, (_, i) => samplePoint('host', 300 + i, 1_788_000_001_000 + i)));
    await storage.drain();
    expect(storage.stats().batchesWritten).toBe(1);
    const [ev] = await storage.rows('SELECT message FROM event');
    expect(ev?.message).toBe(wide);
    expect(await storage.rows('SELECT count(uptime_s) FROM host')).toMatchObject([{ count: 600 }]);
    await storage.stop();
  });

  it('chunks cut exactly at batchSize carry emoji and a lone surrogate (sent as U+FFFD) intact, no line lost or joined', async () => {
    const { storage } = testStorage(influxd.url, { database: 'cut', batchSize: 3 });
    await storage.start();
    // '#cfm-chunk 0' is the writer's first token: text in a reading that looks like one is stored as text.
    const messages = ['班班通 🏫', 'a\uD800b', '😀'.repeat(5), '#cfm-chunk 0', '校校通', 'last'];
    storage.write(
      messages.map((message, i) => ({
        measurement: 'event' as const,
        tags: { device: `d${i}` },
        fields: { message },
        ts: 1_788_000_000_000 + i,
      })),
    );
    await storage.drain();
    expect(storage.stats()).toMatchObject({ batchesWritten: 2, writtenLines: 6 });
    const rows = await storage.rows('SELECT message FROM event');
    expect(rows.map((r) => r.message)).toEqual(messages.map((m) => m.replace('\uD800', '\uFFFD')));
    await storage.stop();
  });

  it('writes gzipped bodies when asked (InfluxDB 1.x /write accepts Content-Encoding: gzip)', async () => {
    const { storage } = testStorage(influxd.url, { database: 'gz', gzip: 'always', gzipThreshold: 0 });
    await storage.start();
    storage.write(Array.from({ length: 50 }, (_, i) => samplePoint('host', i, 1_788_000_000_000 + i)));
    await storage.drain();
    expect(await storage.rows('SELECT count(uptime_s) FROM host')).toMatchObject([{ count: 50 }]);
    await storage.stop();
  });

  it('compresses unless InfluxDB is at a loopback address (`influx.gzip` auto), or as told', () => {
    const auto = (url: string) => compresses({ url, gzip: 'auto' });
    for (const url of [
      'http://localhost:8086',
      'http://localhost.:8086',
      'http://db.localhost:8086',
      'http://127.0.0.1:8086',
      'http://127.1.2.3:8086',
      'http://[::1]:8086',
      'http://[::ffff:127.0.0.1]:8086',
    ])
      expect(auto(url), url).toBe(false);
    for (const url of [
      'http://10.0.0.5:8086',
      'https://influx.example.edu.cn',
      'http://[::ffff:10.0.0.1]:8086',
    ])
      expect(auto(url), url).toBe(true);
    expect(compresses({ url: 'http://127.0.0.1:8086', gzip: 'always' })).toBe(true);
    expect(compresses({ url: 'http://10.0.0.5:8086', gzip: 'never' })).toBe(false);
  });

  it('asks for gzipped query replies only when compressing (`influx.gzip`; auto: not from this host)', async () => {
    const proxy = await new FaultProxy(influxd.url).start();
    onTestFinished(() => proxy.stop());
    proxy.recordForwarded = true;
    const rowsBy = async (gzip: 'auto' | 'always' | 'never') => {
      const { storage } = testStorage(proxy.url, { database: 'gzq', gzip });
      await storage.start();
      storage.write(Array.from({ length: 200 }, (_, i) => samplePoint('host', i, 1_788_000_000_000 + i)));
      await storage.drain();
      proxy.forwarded.length = 0;
      const rows = await storage.rows('SELECT * FROM host');
      await storage.stop();
      const q = proxy.forwarded.filter((f) => f.path.startsWith('/query'));
      expect(q).toHaveLength(1);
      return { rows, ...q[0] };
    };
    const auto = await rowsBy('auto');
    expect(auto).toMatchObject({ acceptEncoding: 'identity', contentEncoding: undefined });
    expect(auto.rows).toHaveLength(200);
    expect(await rowsBy('never')).toMatchObject({ acceptEncoding: 'identity', contentEncoding: undefined });
    const always = await rowsBy('always');
    expect(always.acceptEncoding).toMatch(/gzip/);
    expect(always.contentEncoding).toBe('gzip'); // influxd compressed it, fetch took it apart
    expect(always.rows).toEqual(auto.rows);
  });

  it('reports InfluxQL errors with the statement', async () => {
    const { storage } = testStorage(influxd.url, { database: 'q' });
    await storage.start();
    await expect(storage.query('SELEC nonsense')).rejects.toMatchObject({
      code: 'CFM_STORAGE_QUERY',
      message: expect.stringMatching(/error parsing query.*SELEC nonsense/),
    });
    // A missing measurement is not an error, just no rows.
    expect(await storage.rows('SELECT * FROM nothing_here')).toEqual([]);
    await storage.stop();
  });

  it('fails start-up clearly: unreachable, not InfluxDB, missing database or retention policy', async () => {
    const closed = await freePort();
    const unreachable = testStorage(`http://127.0.0.1:${closed}`, { timeoutMs: 2_000 }).storage;
    await expect(unreachable.start()).rejects.toMatchObject({
      code: 'CFM_STORAGE_UNREACHABLE',
      message: expect.stringContaining('ECONNREFUSED'),
    });

    const web = createServer((_req, res) => res.end('hello'));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    const port = (web.address() as { port: number }).port;
    await expect(testStorage(`http://127.0.0.1:${port}`).storage.start()).rejects.toThrow(
      /without X-Influxdb-Version: is influx.url an InfluxDB server/,
    );
    await new Promise((r) => web.close(r));

    const noCreate = testStorage(influxd.url, { database: 'absent', createDatabase: false }).storage;
    await expect(noCreate.start()).rejects.toMatchObject({ code: 'CFM_STORAGE_NO_DATABASE' });

    const noRp = testStorage(influxd.url, { database: 'rp_db', retentionPolicy: 'one_year' }).storage;
    await expect(noRp.start()).rejects.toThrow(/no retention policy "one_year"/);
  });

  it('a query answer whose rows are not rows, or that is partial, is a clear error; a series without values has none', async () => {
    let body = '';
    const web = createServer((_req, res) => res.end(body));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    const port = (web.address() as { port: number }).port;
    const client = new QueryClient(
      influxConfigSchema.parse({ url: `http://127.0.0.1:${port}`, database: 'x' }),
    );
    const answer = (values: Record<string, unknown>) =>
      JSON.stringify({
        results: [{ statement_id: 0, series: [{ name: 'm', columns: ['time', 'v'], ...values }] }],
      });
    try {
      for (const values of [
        { values: [1, 2] },
        { values: 'rows' },
        { values: { 0: [1, 2] } },
        { values: [[1, 2], null] },
      ]) {
        body = answer(values);
        await expect(client.query('SELECT v FROM m')).rejects.toMatchObject({
          code: 'CFM_STORAGE_QUERY',
          message: expect.stringContaining('unreadable body'),
        });
      }
      // A statement answered in part is refused; a series' own flag is passed on (InfluxDB 1.6 also sets it on
      // complete series of more than 10,000 rows, so only a reader knowing its series' size can judge it).
      body = JSON.stringify({ results: [{ statement_id: 0, partial: true, series: [] }] });
      await expect(client.query('SELECT v FROM m')).rejects.toMatchObject({
        code: 'CFM_STORAGE_QUERY',
        message: expect.stringContaining('only part of a statement'),
      });
      body = answer({ values: [[1, 2]], partial: true });
      expect((await client.query('SELECT v FROM m'))[0]![0]!.partial).toBe(true);
      body = answer({});
      expect(await client.query('SELECT v FROM m')).toEqual([
        [{ name: 'm', tags: {}, columns: ['time', 'v'], values: [] }],
      ]);
      // The rows are the answer's own arrays, not copies.
      body = answer({
        values: [
          [1, 2],
          [3, 'x'],
        ],
      });
      expect((await client.query('SELECT v FROM m'))[0]![0]!.values).toEqual([
        [1, 2],
        [3, 'x'],
      ]);
    } finally {
      await new Promise((r) => web.close(r));
    }
  });

  it('writes to a named retention policy', async () => {
    await influxd.query(
      'CREATE DATABASE rp_ok; CREATE RETENTION POLICY week ON rp_ok DURATION 7d REPLICATION 1',
    );
    const { storage } = testStorage(influxd.url, { database: 'rp_ok', retentionPolicy: 'week' });
    await storage.start();
    storage.write([{ measurement: 'host', tags: { device: 'd' }, fields: { cpu_pct: 1 }, ts: Date.now() }]);
    await storage.drain();
    const r = (await influxd.query('SELECT count(cpu_pct) FROM rp_ok.week.host')) as {
      results: { series?: { values: number[][] }[] }[];
    };
    expect(r.results[0]!.series![0]!.values[0]![1]).toBe(1);
    await storage.stop();
  });

  it('a forced v2 write API on a 1.x server is a fatal, loud error, not silent loss', async () => {
    const fatal: StorageError[] = [];
    const { storage } = testStorage(
      influxd.url,
      { database: 'v2', writeApi: 'v2' },
      { onFatal: (e) => fatal.push(e) },
    );
    await storage.start();
    storage.write([{ measurement: 'host', tags: { device: 'd' }, fields: { cpu_pct: 1 }, ts: Date.now() }]);
    await waitFor(() => fatal.length > 0, { what: 'fatal callback' });
    expect(fatal[0]).toBeInstanceOf(StorageError);
    expect(storage.stats().droppedLines.fatal).toBe(1);
    await storage.stop();
  });
});
