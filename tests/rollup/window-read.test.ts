import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from '../../bench/fixtures.js';
import { entityKey } from '../../common/registry/key.js';
import type { Series, Storage } from '../../common/storage/index.js';
import type { AnyPoint } from '../../contracts/influx.js';
import {
  type DisplayWindow,
  type OutsideData,
  readWindows,
  type SchoolWindows,
  type Window,
  type WindowData,
} from '../../rollup/rollup.js';
import { Influxd, testStorage } from '../helpers/influx.js';

/**
 * The rollup reads a window's buckets with plain `GROUP BY time` statements and counts them itself (#18,
 * docs/scale.md). Before, InfluxDB counted them in subqueries. Both readings must agree on every kind of data a
 * device can store — fields missing, several display sources, errors, activity evidence, points outside the
 * window and on its edges, windows not aligned to buckets, windows longer than one read — so the statements
 * that the rollup used until then are kept here as the reference and run against the same real influxd.
 */
const BUCKET_S = 300;
const DAY0 = Date.parse('2026-10-08T00:00:00+08:00');
const SCHOOLS = ['3301060001', '3301060002'];

/** Random raw readings of one day: displays, hosts, uplink interfaces and probes of two schools' devices. */
function randomDay(seed: number): AnyPoint[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const out: AnyPoint[] = [];
  for (const school of SCHOOLS)
    for (let d = 0; d < 8; d++) {
      // The same device id in both schools: the readings must stay apart.
      const device = `dev-${d}`;
      const n = Math.floor(r() * 60);
      for (let i = 0; i < n; i++) {
        // Mostly between 07:00 and 12:00, some exactly on a bucket or window edge.
        const base = DAY0 + 7 * 3_600_000 + Math.floor(r() * 5 * 3_600_000);
        const ts = r() < 0.2 ? base - (base % 300_000) : base;
        const kind = pick(['display', 'display', 'display', 'host', 'iface', 'probe'] as const);
        if (kind === 'display') {
          const fields: Record<string, number | string> = {};
          if (r() < 0.9) fields.on = r() < 0.7 ? 1 : 0;
          if (r() < 0.85) fields.in_use = r() < 0.5 ? 1 : 0;
          if (r() < 0.5) fields.error_count = r() < 0.3 ? Math.ceil(r() * 3) : 0;
          if (r() < 0.4) fields.use_basis = pick(['activity', 'power', 'signal']);
          if (Object.keys(fields).length === 0) fields.power = 'on';
          out.push({
            measurement: 'display',
            tags: { school, device, kind: 'panel', source: pick(['d0', 'd1']) },
            fields,
            ts,
          } as AnyPoint);
        } else if (kind === 'host') {
          const fields: Record<string, number> =
            r() < 0.8 ? { cpu_pct: Math.floor(r() * 100) } : { mem_used_pct: 5 };
          out.push({
            measurement: 'host',
            tags: { school, device, kind: 'teacher_pc' },
            fields,
            ts,
          } as AnyPoint);
        } else if (kind === 'iface') {
          out.push({
            measurement: 'iface',
            tags: { school, device, kind: 'router', ifname: 'ge0', uplink: r() < 0.8 ? 'true' : 'false' },
            fields: {
              util_in_pct: r() * 100,
              util_out_pct: r() * 100,
              oper_up: r() < 0.8 ? 1 : 0,
              speed_mbps: 1000,
            },
            ts,
          } as AnyPoint);
        } else {
          const sent = Math.ceil(r() * 10);
          out.push({
            measurement: 'probe',
            tags: { school, device, kind: 'router', method: 'icmp' },
            fields: {
              sent,
              received: Math.floor(r() * (sent + 1)),
              rtt_avg_ms: r() * 50,
              jitter_ms: r() * 5,
            },
            ts,
          } as AnyPoint);
        }
      }
    }
  return out;
}

/** The statements the rollup ran until #18, counting buckets in subqueries: the reference. */
async function referenceTeaching(
  storage: Storage,
  w: Window,
): Promise<WindowData & { uplinkRows: Map<string, unknown[][]>; probeRows: Map<string, unknown[][]> }> {
  const where = `time >= ${w.startMs}ms AND time < ${w.endMs}ms`;
  const b = `${BUCKET_S}s`;
  const perBucket = `SELECT max("on") AS o, max(in_use) AS u FROM display WHERE ${where} GROUP BY time(${b}), school, device`;
  const [display = [], faulty = [], host = [], unused = [], activity = [], uplink = [], probe = []] =
    await storage.query(
      [
        `SELECT count(o) AS online, sum(o) AS "on", sum(u) AS use FROM (${perBucket}) GROUP BY school, device`,
        `SELECT count(f) AS faulty FROM (SELECT max(error_count) AS f FROM display WHERE ${where} GROUP BY time(${b}), school, device) WHERE f > 0 GROUP BY school, device`,
        `SELECT count(c) AS online FROM (SELECT max(cpu_pct) AS c FROM host WHERE ${where} GROUP BY time(${b}), school, device) GROUP BY school, device`,
        `SELECT count(o) AS unused FROM (${perBucket}) WHERE o = 1 AND u = 0 GROUP BY school, device`,
        `SELECT count(a) AS activity FROM (SELECT count(use_basis) AS a FROM display WHERE use_basis = 'activity' AND ${where} GROUP BY time(${b}), school, device) WHERE a > 0 GROUP BY school, device`,
        `SELECT max(util_in_pct) AS ui, max(util_out_pct) AS uo, min(oper_up) AS up, max(speed_mbps) AS sp FROM iface WHERE uplink = 'true' AND ${where} GROUP BY time(${b}), school, device fill(none)`,
        `SELECT sum(sent) AS s, sum(received) AS rx, max(rtt_avg_ms) AS r, max(jitter_ms) AS j FROM probe WHERE ${where} GROUP BY time(${b}), school, device fill(none)`,
      ].join('; '),
    );
  const extra = (list: Series[], field: string) =>
    new Map(list.map((s) => [key(s), first(s, field)] as const));
  const unusedOf = extra(unused, 'unused');
  const activityOf = extra(activity, 'activity');
  const out: WindowData = {
    display: new Map(),
    faulty: new Map(),
    host: new Map(),
    uplink: new Map(),
    probe: new Map(),
  };
  for (const s of display)
    out.display.set(key(s), {
      online: first(s, 'online'),
      on: first(s, 'on'),
      use: first(s, 'use'),
      unused: unusedOf.get(key(s)) ?? 0,
      activity: activityOf.get(key(s)) ?? 0,
    });
  for (const s of faulty) out.faulty.set(key(s), first(s, 'faulty'));
  for (const s of host) out.host.set(key(s), first(s, 'online'));
  return { ...out, uplinkRows: rowsOf(uplink), probeRows: rowsOf(probe) };
}

/** A bucket statement's rows by (school, device), as [time, …columns]. */
const rowsOf = (list: Series[]) => new Map(list.map((s) => [key(s), s.values] as const));
/** The rollup's uplink and probe rows back as the statements' values. */
const uplinkValues = (d: WindowData) =>
  new Map(
    [...d.uplink].flatMap(([school, devices]) =>
      [...devices].map(
        ([device, rows]) =>
          [entityKey(school, device), rows.map((r) => [r.timeMs, r.ui, r.uo, r.up, r.speedMbps])] as const,
      ),
    ),
  );
const probeValues = (d: WindowData) =>
  new Map(
    [...d.probe].flatMap(([school, devices]) =>
      [...devices].map(
        ([device, rows]) =>
          [
            entityKey(school, device),
            rows.map((r) => [r.timeMs, r.sent, r.received, r.rttMs, r.jitterMs]),
          ] as const,
      ),
    ),
  );

async function referenceOutside(storage: Storage, w: Window): Promise<OutsideData> {
  const where = `time >= ${w.startMs}ms AND time < ${w.endMs}ms`;
  const b = `${BUCKET_S}s`;
  const [display = [], host = []] = await storage.query(
    [
      `SELECT sum(o) AS "on" FROM (SELECT max("on") AS o FROM display WHERE ${where} GROUP BY time(${b}), school, device) GROUP BY school, device`,
      `SELECT count(c) AS online FROM (SELECT max(cpu_pct) AS c FROM host WHERE ${where} GROUP BY time(${b}), school, device) GROUP BY school, device`,
    ].join('; '),
  );
  return {
    on: new Map(display.map((s) => [key(s), first(s, 'on')] as const)),
    host: new Map(host.map((s) => [key(s), first(s, 'online')] as const)),
  };
}

const key = (s: Series) => entityKey(s.tags.school ?? '', s.tags.device ?? '');
function first(s: Series, column: string): number {
  const v = s.values[0]?.[s.columns.indexOf(column)];
  return typeof v === 'number' ? v : 0;
}

/** What the rollup uses of a window's figures: entries of zero are the same as none (`?? 0`), except display. */
const figures = (m: Map<string, number>) => new Map([...m].filter(([, n]) => n !== 0));
/** Only the entries of these schools' devices. */
function only<V>(m: Map<string, V>, schools: readonly string[]): Map<string, V> {
  return new Map([...m].filter(([k]) => schools.some((s) => k.startsWith(entityKey(s, '')))));
}

const at = (day: number, h: number, m = 0, s = 0) => DAY0 + day * 86_400_000 + ((h * 60 + m) * 60 + s) * 1000;
const win = (startMs: number, endMs: number): Window => ({ startMs, endMs, buckets: 0 });
/** One window per school of a day, or several: the cases the rollup meets. */
const CASES: [
  string,
  (day: number) => { a: { t: Window[]; o: Window[] }; b: { t: Window[]; o: Window[] } },
][] = [
  [
    'one aligned period, both schools',
    (d) => {
      const p = win(at(d, 8), at(d, 8, 45));
      return { a: { t: [p], o: [] }, b: { t: [p], o: [] } };
    },
  ],
  [
    'one unaligned period (each window its own read)',
    (d) => {
      const p = win(at(d, 8, 3, 17), at(d, 8, 48, 1));
      return { a: { t: [p], o: [] }, b: { t: [p], o: [] } };
    },
  ],
  [
    'a whole day: periods and the outside windows of two timetables',
    (d) => {
      const [p1, p2, p3, p4] = [
        win(at(d, 8), at(d, 8, 45)),
        win(at(d, 8, 55), at(d, 9, 40)),
        win(at(d, 8, 50), at(d, 9, 35)),
        win(at(d, 10, 0), at(d, 11, 30)),
      ];
      return {
        a: { t: [p1, p2, p4], o: [win(at(d, 0), at(d, 8)), win(at(d, 11, 30), at(d, 24))] },
        b: { t: [p1, p3], o: [win(at(d, 0), at(d, 8)), win(at(d, 9, 35), at(d, 24))] },
      };
    },
  ],
  [
    'a day with one unaligned period among aligned ones',
    (d) => {
      const [p1, p2] = [win(at(d, 8), at(d, 8, 45)), win(at(d, 9, 2, 30), at(d, 9, 40))];
      return {
        a: { t: [p1, p2], o: [win(at(d, 11, 0), at(d, 24))] },
        b: { t: [p1], o: [win(at(d, 0), at(d, 8))] },
      };
    },
  ],
  [
    'a day off for one school, an unaligned period of the other nested in it (each range its own read)',
    (d) => ({
      a: { t: [], o: [win(at(d, 0), at(d, 24))] },
      b: { t: [win(at(d, 8, 3, 17), at(d, 8, 48, 1))], o: [win(at(d, 0), at(d, 8, 3, 17))] },
    }),
  ],
  [
    'a day without school (one outside window) and an empty span',
    (d) => ({
      a: { t: [win(at(d, 20), at(d, 21))], o: [win(at(d, 0), at(d, 24))] },
      b: { t: [], o: [win(at(d, 0), at(d, 24))] },
    }),
  ],
];

describe('rollup: windows read with plain statements equal the subquery reading', () => {
  let influxd: Influxd;
  let storage: Storage;
  beforeAll(async () => {
    influxd = await new Influxd().start();
    storage = testStorage(influxd.url, { database: 'windows' }).storage;
    await storage.start();
    for (const seed of [1, 2, 3])
      storage.write(randomDay(seed).map((p) => ({ ...p, ts: p.ts + (seed - 1) * 86_400_000 })));
    await storage.flush();
  }, 60_000);
  afterAll(async () => {
    await storage?.stop();
    await influxd?.dispose();
  });

  for (const seed of [1, 2, 3])
    for (const [name, make] of CASES)
      for (const rowBudget of [400_000, 1])
        it(`day ${seed}, ${name}${rowBudget === 1 ? ', one school per read, two in flight' : ''}`, async () => {
          const { a, b } = make(seed - 1);
          const schools: SchoolWindows[] = [
            { id: SCHOOLS[0]!, teaching: a.t, outside: a.o, devices: 8 },
            { id: SCHOOLS[1]!, teaching: b.t, outside: b.o, devices: 8 },
          ];
          // Distinct window objects, as the rollup has them (one per range and kind).
          const teaching = [...new Set([...a.t, ...b.t])];
          const outside = [...new Set([...a.o, ...b.o])];
          // One school per read: both reads in flight at once.
          const got = await readWindows(storage, BUCKET_S, { teaching, outside }, schools, {
            rowBudget,
            inFlight: rowBudget === 1 ? 2 : 1,
          });
          let displays = 0;
          let uplinks = 0;
          for (const w of teaching) {
            const mine = schools.filter((s) => s.teaching.includes(w)).map((s) => s.id);
            const want = await referenceTeaching(storage, w);
            const data = got.teaching.get(w)!;
            expect(data.display).toEqual(only(want.display, mine));
            expect(figures(data.faulty)).toEqual(only(figures(want.faulty), mine));
            expect(figures(data.host)).toEqual(only(figures(want.host), mine));
            // (A window read on its own reads every school's uplink; the rollup takes each school's own.)
            expect(only(uplinkValues(data), mine)).toEqual(only(want.uplinkRows, mine));
            // Probe rows: received capped at sent, as the rollup reads them.
            const probes = new Map(
              [...want.probeRows].map(
                ([k, rows]) =>
                  [
                    k,
                    rows.map(([t, s, rx, r, j]) => [
                      t,
                      s ?? 0,
                      Math.min(Number(rx ?? 0), Number(s ?? 0)),
                      r,
                      j,
                    ]),
                  ] as const,
              ),
            );
            expect(only(probeValues(data), mine)).toEqual(only(probes, mine));
            uplinks += data.uplink.size;
            displays += data.display.size;
          }
          for (const w of outside) {
            const mine = schools.filter((s) => s.outside.includes(w)).map((s) => s.id);
            const want = await referenceOutside(storage, w);
            expect(got.outside.get(w)!.on).toEqual(only(want.on, mine));
            expect(figures(got.outside.get(w)!.host)).toEqual(only(figures(want.host), mine));
            displays += got.outside.get(w)!.on.size;
          }
          if (!name.includes('empty')) expect(displays).toBeGreaterThan(4);
          if (!name.includes('empty')) expect(uplinks).toBeGreaterThan(0);
        });

  it('the random days exercise every figure: unused, activity, use, faults, host-only devices', async () => {
    const want = await referenceTeaching(storage, win(at(0, 6, 58), at(0, 12, 1)));
    const sum = (f: (d: DisplayWindow) => number) => [...want.display.values()].reduce((n, d) => n + f(d), 0);
    expect(sum((d) => d.unused) * sum((d) => d.activity) * sum((d) => d.use)).toBeGreaterThan(0);
    expect([...want.faulty.values()].some((n) => n > 0)).toBe(true);
    expect(want.host.size).toBeGreaterThan(0);
  });

  it('a long teaching window is read in bucket-aligned slices for its uplink: every bucket, each once', async () => {
    const w = win(at(0, 7, 1), at(0, 11, 59)); // 60 buckets, edges on minutes: read on its own, in 3 slices
    const schools = SCHOOLS.map((id) => ({ id, teaching: [w], outside: [], devices: 8 }));
    const got = (await readWindows(storage, BUCKET_S, { teaching: [w], outside: [] }, schools)).teaching.get(
      w,
    )!;
    const want = await referenceTeaching(storage, w);
    expect(got.uplink.size).toBe(2);
    expect(uplinkValues(got)).toEqual(want.uplinkRows);
    expect([...uplinkValues(got).values()].flat().length).toBeGreaterThan(24);
  });

  it('a server that cuts answers short (max-row-limit) fails the read with a clear error, never a smaller figure', async () => {
    const limited = await new Influxd({ maxRowLimit: 3 }).start();
    const { storage: st } = testStorage(limited.url, { database: 'limited' });
    const w = win(at(0, 8), at(0, 9));
    const schools = SCHOOLS.map((id) => ({ id, teaching: [w], outside: [], devices: 8 }));
    const read = () => readWindows(st, BUCKET_S, { teaching: [w], outside: [] }, schools);
    const cut = { code: 'CFM_STORAGE_QUERY', message: expect.stringContaining('max-row-limit') };
    try {
      await st.start();
      // Exactly the limit in the first statement, ending on a series' end: InfluxDB marks nothing partial and
      // drops the later statements (the host buckets) — the read's last statement is missing.
      const tags = { school: SCHOOLS[0]!, device: 'dev-0' };
      st.write(
        [0, 1, 2].flatMap(
          (k) =>
            [
              {
                measurement: 'display',
                tags: { ...tags, kind: 'panel' },
                fields: { on: 1 },
                ts: at(0, 8, k * 5 + 1),
              },
              {
                measurement: 'host',
                tags: { ...tags, kind: 'teacher_pc' },
                fields: { cpu_pct: 5 },
                ts: at(0, 8, k * 5 + 1),
              },
            ] as AnyPoint[],
        ),
      );
      await st.flush();
      await expect(read()).rejects.toMatchObject(cut);
      // More than the limit: the series cut is marked partial.
      st.write(randomDay(1));
      await st.flush();
      await expect(read()).rejects.toMatchObject(cut);
    } finally {
      await st.stop();
      await limited.dispose();
    }
  });
});
