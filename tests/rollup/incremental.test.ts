import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector, collectorConfigSchema } from '../../collector/collector.js';
import { type CalendarDef, Calendars } from '../../common/calendar.js';
import { silentLogger } from '../../common/log.js';
import { RegistryIndex } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { AnyPoint } from '../../contracts/influx.js';
import type { Registry } from '../../contracts/registry.js';
import { buildTopic } from '../../contracts/topics.js';
import { Rollup } from '../../rollup/rollup.js';
import { captureLogger, Influxd, testStorage } from '../helpers/influx.js';

/**
 * The scheduled rollup keeps the results of final windows (docs/scale.md, "Rollups: each raw point read about
 * once"): a later run of the same day reads no raw points, yet writes what a fresh instance (a restart) writes;
 * a collector's `late_data` marker makes the day be read again; two instances write the same points, not twice.
 */
const SCHOOL = '3301060009';
const REGISTRY: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
  ],
  schools: [
    {
      id: SCHOOL,
      name: '西湖区第九小学',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 1,
      students: 45,
      teachers: 3,
    },
  ],
  classrooms: [{ id: 'c1', school: SCHOOL, name: '一(1)班', isClass: true }],
  devices: [
    { id: 'pn-1', school: SCHOOL, classroom: 'c1', kind: 'panel' },
    { id: 'pc-1', school: SCHOOL, classroom: 'c1', kind: 'teacher_pc' },
  ],
};
const PERIODS = ['08:00-08:45', '08:55-09:40', '10:00-10:45'];
const CALENDAR: CalendarDef = {
  id: 'inc',
  regions: ['330106'],
  terms: [{ name: '2026—2027 学年第一学期', start: '2026-09-01', end: '2027-01-22' }],
  periods: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, PERIODS])),
};
const DAY = '2026-10-08'; // a Thursday
const at = (hhmm: string) => Date.parse(`${DAY}T${hhmm}:00+08:00`);
const SETTLE_MS = 3_600_000;
const LATER = at('23:59') + 2 * SETTLE_MS; // every window of the day final
const TAGS = { school: SCHOOL, kind: 'panel', region: '330000/330100/330106', classroom: 'c1' };

/** A panel reading each 5 minutes from `from` to `to`: on, in use when `use`. */
function panel(from: string, to: string, use: boolean): AnyPoint[] {
  const out: AnyPoint[] = [];
  for (let ts = at(from) + 60_000; ts < at(to); ts += 300_000)
    out.push({
      measurement: 'display',
      tags: { ...TAGS, device: 'pn-1' },
      fields: { on: 1, in_use: use ? 1 : 0, error_count: 0 },
      ts,
    });
  return out;
}

let influxd: Influxd;
let storage: Storage;
const calendars = new Calendars([CALENDAR]);
const index = new RegistryIndex(REGISTRY);
const rollupOf = (keep = true) =>
  new Rollup({
    storage,
    registry: () => index,
    calendars: () => calendars,
    log: silentLogger(),
    bucketS: 300,
    ...(keep && { keep: { settleMs: SETTLE_MS } }),
  });

/** The day's usage_day rows of the panel and the PC, as written (every field, sorted by device). */
async function usageDay(): Promise<Record<string, unknown>[]> {
  const [series = []] = await storage.query(`SELECT * FROM usage_day WHERE time = ${at('00:00')}ms`);
  const rows = series.flatMap((s) =>
    s.values.map((v) => Object.fromEntries(s.columns.map((c, i) => [c, v[i]]))),
  );
  return rows.sort((a, b) => String(a.device).localeCompare(String(b.device)));
}

beforeAll(async () => {
  influxd = await new Influxd().start();
  ({ storage } = testStorage(influxd.url, { database: 'incremental' }));
  await storage.start();
  // Used in the first period, on but unused in the second, off in the third; on 18:00–19:00 (left on).
  storage.write([
    ...panel('07:50', '08:45', true),
    ...panel('08:55', '09:40', false),
    ...panel('18:00', '19:00', false),
  ]);
  storage.write(
    [at('08:10'), at('08:20')].map((ts) => ({
      measurement: 'host' as const,
      tags: { ...TAGS, kind: 'teacher_pc', device: 'pc-1' },
      fields: { cpu_pct: 12 },
      ts,
    })),
  );
  await storage.flush();
}, 60_000);

afterAll(async () => {
  await storage?.stop();
  await influxd?.dispose();
});

describe('the scheduled rollup reads each window once', () => {
  let once: Record<string, unknown>[];

  it('reads every window the first time, none the next time, and writes the same day', async () => {
    const r = rollupOf();
    const first = await r.day(DAY, LATER);
    expect(first.read).toBeGreaterThan(0);
    expect(first.reused).toBe(0);
    once = await usageDay();
    expect(once.map((x) => [x.device, x.use_b, x.on_b, x.unused_b, x.periods_used, x.left_on_b])).toEqual([
      ['pc-1', 2, 2, 0, 0, 0],
      ['pn-1', 9, 18, 9, 1, 12 + 2], // 12 buckets 18:00–19:00, 2 before the first period
    ]);
    const next = await r.day(DAY, LATER + 3_600_000);
    expect(next).toMatchObject({ read: 0, reused: first.read });
    expect(await usageDay()).toEqual(once);
  });

  it('after a restart (a fresh instance) the day is read once more and written the same', async () => {
    const fresh = await rollupOf().day(DAY, LATER + 7_200_000);
    expect(fresh.reused).toBe(0);
    expect(await usageDay()).toEqual(once);
  });

  it('keeps a window only once it is final: a run soon after the period ended reads it again next time', async () => {
    const r = rollupOf();
    const early = await r.day(DAY, at('09:00')); // the first period ended 15 min ago: not final
    expect(early).toMatchObject({ read: 2, reused: 0 }); // the period, and the morning before it
    const later = await r.day(DAY, at('09:00') + SETTLE_MS);
    expect(later.reused).toBe(1); // the morning before the first period: final already at 09:00
    const final = await r.day(DAY, at('09:45') + SETTLE_MS); // the first two periods and the morning final now
    expect(final.reused).toBe(2);
    await r.day(DAY, LATER); // the whole day, for the tests after this one
  });

  it('late data for a finished day: kept windows are dropped when the collector marks the day, and the day is read again', async () => {
    const r = rollupOf();
    await r.day(DAY, LATER);
    // A spool replay: the third period's readings arrive at LATER + 1 h, in use, through a real collector.
    const arrival = LATER + 3_600_000;
    const logged = captureLogger('collector');
    const collector = new Collector(collectorConfigSchema.parse({ metrics: { port: 0 } }), {
      log: logged.log,
      storage,
      now: () => arrival,
    });
    // One reading on time (not late), then the replay.
    for (const ts of [
      arrival - 5_000,
      ...Array.from({ length: 9 }, (_, i) => at('10:00') + 60_000 + i * 300_000),
    ])
      collector.handle(
        buildTopic({ school: SCHOOL, device: 'pn-1', channel: 'telemetry' }),
        Buffer.from(
          JSON.stringify({
            v: 1,
            ts,
            seq: 0,
            kind: 'panel',
            display: { source: 'pjlink', power: 'on', input: '31' },
            inUse: true,
          }),
        ),
      );
    await storage.flush();
    const [marks = []] = await storage.query(`SELECT n FROM late_data WHERE "date" = '${DAY}'`);
    expect(marks[0]?.values).toHaveLength(1); // nine readings, one marker
    // Counted, and said once for the device (a clock behind would make every reading late).
    expect(collector.stats()).toMatchObject({ accepted: 10, late: 9 });
    expect(logged.lines.filter((l) => String(l.msg).startsWith('reading stored late'))).toHaveLength(1);

    // Not seen until then: the kept windows are reused (this is what the marker is for).
    const again = await r.day(DAY, arrival + 60_000);
    expect(again.reused).toBe(0);
    const rows = await usageDay();
    expect(rows.find((x) => x.device === 'pn-1')).toMatchObject({ use_b: 18, periods_used: 2 });
    // The same as a fresh instance reading everything.
    await rollupOf(false).day(DAY, arrival + 60_000);
    expect(await usageDay()).toEqual(rows);
  });

  it('a school given a window after it was kept (an import) is read, not handed a result without its readings', async () => {
    const day2 = '2026-10-09'; // a Friday
    const at2 = (hhmm: string) => Date.parse(`${day2}T${hhmm}:00+08:00`);
    const school2 = '3301060010';
    const withSecond: Registry = {
      ...REGISTRY,
      schools: [...REGISTRY.schools, { ...REGISTRY.schools[0]!, id: school2, name: '西湖区第十小学' }],
      classrooms: [...REGISTRY.classrooms, { id: 'c1', school: school2, name: '一(1)班', isClass: true }],
      devices: [...REGISTRY.devices, { id: 'pn-2', school: school2, classroom: 'c1', kind: 'panel' }],
    };
    // Both schools' panels in use in the first period of the day.
    storage.write(
      [SCHOOL, school2].flatMap((school, i) =>
        Array.from({ length: 9 }, (_, k) => ({
          measurement: 'display' as const,
          tags: { ...TAGS, school, device: `pn-${i + 1}` },
          fields: { on: 1, in_use: 1, error_count: 0 },
          ts: at2('08:00') + 60_000 + k * 300_000,
        })),
      ),
    );
    await storage.flush();
    let current = index;
    const r = new Rollup({
      storage,
      registry: () => current,
      calendars: () => calendars,
      log: silentLogger(),
      bucketS: 300,
      keep: { settleMs: SETTLE_MS },
    });
    const later2 = at2('23:59') + 2 * SETTLE_MS;
    await r.day(day2, later2); // every window kept, holding the first school only
    current = new RegistryIndex(withSecond); // the import
    const again = await r.day(day2, later2 + 60_000);
    expect(again.read).toBeGreaterThan(0);
    const useOf = async () => {
      const [series = []] = await storage.query(
        `SELECT use_b FROM usage_day WHERE time = ${at2('00:00')}ms AND school = '${school2}' AND device = 'pn-2'`,
      );
      return series[0]?.values[0]?.[1];
    };
    expect(await useOf()).toBe(9);
  });

  it('two instances rolling up the same day write the same points once, not added up', async () => {
    const a = rollupOf();
    const b = rollupOf();
    await a.day(DAY, LATER + 5 * SETTLE_MS);
    const one = await usageDay();
    await Promise.all([a.day(DAY, LATER + 6 * SETTLE_MS), b.day(DAY, LATER + 6 * SETTLE_MS)]);
    expect(await usageDay()).toEqual(one);
    const [count = []] = await storage.query(
      `SELECT count(use_b) FROM usage_day WHERE time = ${at('00:00')}ms AND device = 'pn-1'`,
    );
    expect(count[0]?.values[0]?.[1]).toBe(1);
  });

  it('a backfill after a restore (raw readings no collector marked) is not undone by the scheduled worker', async () => {
    const worker = rollupOf();
    await worker.day(DAY, LATER + 10 * SETTLE_MS);
    const pn1 = async () => (await usageDay()).find((x) => x.device === 'pn-1');
    const before = await pn1();
    // Restored from a backup: the second period was in use after all (same series and times, in_use now 1).
    storage.write(panel('08:55', '09:40', true));
    await storage.flush();
    // The documented repair: `npm run api -- rollup --from D --to D` (a Rollup that keeps nothing).
    await rollupOf(false).day(DAY, LATER + 10 * SETTLE_MS + 60_000);
    const repaired = await pn1();
    expect(repaired!.use_b).toBe((before!.use_b as number) + 9);
    // The worker's next scheduled run reads the day again (the backfill marked it) and keeps the repair.
    const next = await worker.day(DAY, LATER + 11 * SETTLE_MS);
    expect(next.read).toBeGreaterThan(0);
    expect(await pn1()).toEqual(repaired);
  });
});
