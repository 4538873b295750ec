import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { dateOf, dayNumber, localMidnightMs } from '../../../common/calendar.js';
import { DayCache, USAGE_FIELDS, unpackCounters } from '../../../common/figures/days.js';
import { entityKey } from '../../../common/registry/key.js';
import type { Storage } from '../../../common/storage/storage.js';
import type { AnyPoint } from '../../../contracts/influx.js';
import { Influxd, testStorage, waitFor } from '../../helpers/influx.js';

/**
 * The day cache reads `usage_packed_day` strings in place (readPacked), reusing a school part's device layout
 * from the day read before. Its answer must be exactly the plain reading — split on `|` and the first `:`,
 * counters by unpackCounters — for every string a rollup (of any format) or a damaged row may hold.
 */
const influxd = new Influxd();
let storage: Storage;
const FIRST = '2026-10-12';
const date = (k: number) => dateOf(dayNumber(FIRST) + k);

/** Per day, per school part: the `devices` string stored. */
const DAYS: Record<string, string>[] = [
  // Day 0: the current format, an old (5-counter) item, a later format (10 counters), two parts.
  {
    'S1|0': 'a:56,50,40,0,5,10,132,56|b:54,54,27,0,3|c:1,2,3,4,5,6,7,8,9,10',
    'S1|1': 'd:9,9,9,0,1,0,0,9',
    'S2|0': 'a:1,1,1,1,1,1,1,1',
  },
  // Day 1: same layout, new figures; then a device inserted in the middle, one removed, a new school.
  {
    'S1|0': 'a:50,50,30,0,4,20,0,50|b:54,54,27,0,3|c:8,7,6,5,4,3,2,1',
    'S1|1': 'd:1,1,1,1,1,1,1,1',
    'S2|0': 'a:2,2,2,2,2,2,2,2|z:3,3,3,3,3,3,3,3|b:4,4,4,4,4,4,4,4',
    'S3|0': 'q:7,7,7,7,7,7,7,7',
  },
  // Day 2: hostile or damaged items — no colon, an empty id, an id that is a prefix of the known one, too few
  // counters, damaged numbers, six counters, a trailing separator, a colon inside the counters.
  {
    'S1|0': 'a:x,-3,99999,1e400,NaN,0,0,0|noColon|:1,2,3,4,5,6,7,8|ab:1,2,3,4,5,6,7,8|b:1,2,3,4|',
    'S1|1': 'd:1,2,3,4,5,6|d:5,5,5,5,5,5,5,5',
    'S2|0': 'a: 1,2,3,4,5,6,7,8|z:1:2,3,4,5,6,7,8,9|b:0x10,1.5,,7,7,7,7,7',
    'S3|0': '',
  },
  // Day 3: the layout of day 1 again for S2 (its devices back in order), numbers beyond 16 bits — one of 309
  // digits, just above the largest double, which a digit-by-digit reading rounds differently from Number().
  {
    'S1|0': `a:99999999999999999999999,1,1,1,1,1,1,1|d:179769313486231590${'0'.repeat(291)},1,1,1,1,1,1,1`,
    'S2|0': 'a:2,2,2,2,2,2,2,2|z:3,3,3,3,3,3,3,3|b:4,4,4,4,4,4,4,4',
    'S3|0': 'q:1,2,3,4,5|r:6,7,8,9,10,11,12,13',
  },
];

/** The plain reading (the reader before #18): per `entityKey(school, device)`, its counters (a later item wins). */
function plain(day: Record<string, string>): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [k, text] of Object.entries(day)) {
    const school = k.split('|')[0]!;
    for (const item of text.split('|')) {
      const colon = item.indexOf(':');
      if (colon <= 0) continue;
      const c = unpackCounters(item.slice(colon + 1));
      // Kept as 16-bit integers, as the cache keeps them (1.5 is 1).
      if (c) out.set(entityKey(school, item.slice(0, colon)), Array.from(Int16Array.from(c)));
    }
  }
  return out;
}

/** The fixture: DAYS as a rollup writes them, with each day's marker. */
function fixture(): AnyPoint[] {
  const pts: AnyPoint[] = [];
  DAYS.forEach((day, k) => {
    const ts = localMidnightMs(date(k));
    for (const [key, devices] of Object.entries(day)) {
      const [school, part] = key.split('|') as [string, string];
      const parts = Object.keys(day).filter((x) => x.startsWith(`${school}|`)).length;
      pts.push({
        measurement: 'usage_packed_day',
        tags: { region: '330000', school, part },
        fields: { devices, n: devices.split('|').length, parts, bucket_s: 300 },
        ts,
      });
    }
    pts.push({
      measurement: 'rollup_day',
      tags: {},
      fields: { devices: 9, schools: 3, duration_ms: k + 0.5, bucket_s: 300 },
      ts,
    });
  });
  // A part at or beyond its own number of parts: ignored, as the reader always did.
  pts.push({
    measurement: 'usage_packed_day',
    tags: { region: '330000', school: 'S2', part: '1' },
    fields: { devices: 'stale:9,9,9,9,9,9,9,9', n: 1, parts: 1, bucket_s: 300 },
    ts: localMidnightMs(date(0)),
  });
  return pts;
}

beforeAll(async () => {
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'packed' }).storage;
  await storage.start();
  storage.write(fixture());
  await storage.flush();
}, 60_000);

afterAll(async () => {
  await storage?.stop();
  await influxd.dispose();
});

/** The test's storage, with every query it is asked kept in `queries`. */
function countingQueries(): { counted: Storage; queries: string[] } {
  const queries: string[] = [];
  const counted = new Proxy(storage, {
    get: (target, key) =>
      key === 'query'
        ? (q: string) => {
            queries.push(q);
            return target.query(q);
          }
        : Reflect.get(target, key),
  });
  return { counted, queries };
}

/** What the cache holds for a day: per `entityKey`, the eight counters of every device present. */
function held(days: DayCache, d: string): Map<string, number[]> {
  const day = days.day(d)!;
  const out = new Map<string, number[]>();
  for (let i = 0; i < days.deviceKeys.length; i++) {
    if (i >= day.present.length || !day.present[i]) continue;
    out.set(
      days.deviceKeys[i]!,
      USAGE_FIELDS.map((_, f) => DayCache.get(day, i, f)),
    );
  }
  return out;
}

describe('reading packed days in place', () => {
  it('holds exactly what the plain reading does, day after day, whatever the layout did', async () => {
    const days = new DayCache({ storage, checkEveryMs: 60_000, maxDays: 400 });
    // One day at a time, in order, so every day after the first is read against the layout of the one before.
    for (let k = 0; k < DAYS.length; k++) {
      await days.ensure(date(k), date(k));
      expect(held(days, date(k)), `day ${k}`).toEqual(plain(DAYS[k]!));
    }
    // Earlier days keep their arrays; a device first seen later is simply absent from them.
    expect(held(days, date(0))).toEqual(plain(DAYS[0]!));
    expect(days.day(date(0))!.present.length).toBeLessThanOrEqual(days.deviceKeys.length);
    // One index per (school, device), never two for the same one however often its position moved.
    expect(new Set(days.deviceKeys).size).toBe(days.deviceKeys.length);
    expect(days.deviceKeys).not.toContain(entityKey('S2', 'stale'));
  });

  it('reads several days per query to the same figures, and spot values are the plain ones', async () => {
    const { counted, queries } = countingQueries();
    const days = new DayCache({ storage: counted, checkEveryMs: 60_000, maxDays: 400 });
    await days.ensure(date(0), date(DAYS.length - 1));
    // Monday alone, then Tuesday to Thursday: a run starts at each local Tuesday (see the next test).
    expect(queries).toHaveLength(2);
    for (let k = 0; k < DAYS.length; k++) {
      expect(held(days, date(k)), `day ${k}`).toEqual(plain(DAYS[k]!));
      expect(days.day(date(k))!.marker, `day ${k}`).toBe(k + 0.5); // each day its own marker
    }
    const d2 = held(days, date(2));
    // Damaged numbers: 0, never negative, at most 32,767; a 5-counter item derives unused = on − use.
    expect(d2.get(entityKey('S1', 'a'))).toEqual([0, 0, 32_767, 0, 0, 0, 0, 0]);
    expect(d2.get(entityKey('S1', 'ab'))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(d2.has(entityKey('S1', 'b'))).toBe(false); // four counters: not read
    expect(d2.get(entityKey('S1', 'd'))).toEqual([5, 5, 5, 5, 5, 5, 5, 5]); // six counters skipped, the next wins
    expect(held(days, date(3)).get(entityKey('S3', 'q'))).toEqual([1, 2, 3, 4, 5, 0, 0, 0]);
    expect(held(days, date(0)).get(entityKey('S1', 'b'))).toEqual([54, 54, 27, 0, 3, 27, 0, 0]);
  });

  it('reads a long span a week per query, days without rollups empty, and days already held not again', async () => {
    const { counted, queries } = countingQueries();
    const days = new DayCache({ storage: counted, checkEveryMs: 60_000, maxDays: 400 });
    await days.ensure(date(1), date(1));
    expect(queries).toHaveLength(1);
    // 21 days before day 1 (held), ten after it. A run starts at each local Tuesday (where InfluxDB's weekly
    // shards start) and holds seven days at most: 7, 7, 7 before, and 6, 4 after (FIRST is a Monday).
    await days.ensure(date(-20), date(11));
    expect(queries).toHaveLength(6);
    const spans = queries.map((q) => {
      const [a, b] = [...q.matchAll(/time >= (\d+)ms AND time < (\d+)ms/g)][0]!.slice(1).map(Number);
      return `${dateOf(Math.floor((a! + 8 * 3_600_000) / 86_400_000))}+${(b! - a!) / 86_400_000}`;
    });
    expect(spans.sort()).toEqual([
      '2026-09-22+7',
      '2026-09-29+7',
      '2026-10-06+7',
      '2026-10-13+1',
      '2026-10-14+6',
      '2026-10-20+4',
    ]);
    expect(days.loads).toBe(32);
    for (let k = -20; k <= 11; k++) {
      const day = days.day(date(k))!;
      if (k >= 0 && k < DAYS.length) expect(held(days, date(k)), `day ${k}`).toEqual(plain(DAYS[k]!));
      else
        expect([day.marker, day.present.some((x) => x === 1), day.uplink.size], `day ${k}`).toEqual([
          null,
          false,
          0,
        ]);
    }
  });

  it('reads fewer days per query for a large fleet (its size from the registry until the days show it)', async () => {
    const { counted, queries } = countingQueries();
    // 150,000 devices: two days per query. Tuesday to Thursday of the next week: Tue–Wed, Thu–Fri, Sat–Sun,
    // Monday (the next Tuesday starts a run), Tue–Wed, Thu.
    const days = new DayCache({
      storage: counted,
      checkEveryMs: 60_000,
      maxDays: 400,
      fleetSize: () => 150_000,
    });
    await days.ensure(date(-6), date(DAYS.length - 1));
    expect(queries).toHaveLength(6);
    for (let k = 0; k < DAYS.length; k++) expect(held(days, date(k)), `day ${k}`).toEqual(plain(DAYS[k]!));
  });

  it('keeps the days of a read in flight that an invalidation did not touch, and reads only that one again', async () => {
    const { counted, queries } = countingQueries();
    let release = () => {};
    const held1 = new Promise<void>((r) => {
      release = r;
    });
    const gated = new Proxy(counted, {
      get: (target, key) =>
        key === 'query'
          ? async (q: string) => {
              const first = queries.length === 0;
              const answer = target.query(q);
              if (first) await held1; // the first read is answered, then held until released
              return answer;
            }
          : Reflect.get(target, key),
    });
    const days = new DayCache({ storage: gated, checkEveryMs: 60_000, maxDays: 400 });
    const reading = days.ensure(date(1), date(3)); // Tuesday to Thursday: one read
    await waitFor(() => queries.length === 1);
    days.invalidate(date(2)); // e.g. this process re-ran day 2's rollup while the three days were being read
    release();
    await reading;
    expect(queries).toHaveLength(2);
    expect(queries[1]).toContain(
      `time >= ${localMidnightMs(date(2))}ms AND time < ${localMidnightMs(date(3))}ms`,
    );
    for (let k = 1; k < DAYS.length; k++) expect(held(days, date(k)), `day ${k}`).toEqual(plain(DAYS[k]!));
    expect(days.loads).toBe(3);
  });

  it('refuses an answer a server cut short (max-row-limit) with a clear error, never fewer devices', async () => {
    const limited = await new Influxd({ maxRowLimit: 3 }).start();
    onTestFinished(() => limited.dispose());
    const { storage: s } = testStorage(limited.url, { database: 'packed' });
    await s.start();
    onTestFinished(() => s.stop());
    s.write(fixture());
    await s.flush();
    const days = new DayCache({ storage: s, checkEveryMs: 60_000, maxDays: 400 });
    await expect(days.ensure(date(0), date(DAYS.length - 1))).rejects.toMatchObject({
      code: 'CFM_STORAGE_QUERY',
      message: expect.stringContaining('max-row-limit'),
    });
    expect(days.day(date(0))).toBeUndefined();
  });
});
