import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  type Evaluation,
  evaluate,
  loadPeriod,
  lookbackDaysFor,
  rollups,
  teachingBuckets,
} from '../../api/attainment.js';
import { DayCache } from '../../api/days.js';
import { profileSet } from '../../api/profiles.js';
import { Calendars } from '../../common/calendar.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import { CITY, CITY_CALENDAR, cityRollup, writeCity } from '../helpers/city.js';
import { Influxd, testStorage } from '../helpers/influx.js';

const influxd = new Influxd();
let storage: Storage;
let dir: string;
const registry = () => store.index;
let store: RegistryStore;
const calendars = new Calendars([CITY_CALENDAR]);
const profiles = profileSet();
const WEEK = { from: '2026-10-05', to: '2026-10-11' }; // 国庆 Mon–Wed, Thu, Fri, 调休 Sat, Sun
/** A fresh day cache: every call reads the rollups from InfluxDB again. */
const newDays = () => new DayCache({ storage, checkEveryMs: 0, maxDays: 400 });
const teaches = () => teachingBuckets(registry(), calendars);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-attain-'));
  store = new RegistryStore(join(dir, 'registry.json')).load();
  await store.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'city' }).storage;
  await storage.start();
  await writeCity(storage);
  const rollup = cityRollup(storage, registry, calendars);
  await rollup.range(WEEK.from, WEEK.to);
  await rollup.day('2027-02-02'); // a vacation day with readings: nothing to roll up
});
afterAll(async () => {
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function week(profile = 'cn-2020', idleDays?: number): Promise<Evaluation> {
  const data = await loadPeriod(newDays(), WEEK, lookbackDaysFor(idleDays ?? 20), teaches());
  return evaluate(data, registry(), calendars, profiles.get(profile)!, idleDays ? { idleDays } : {});
}
const school = (ev: Evaluation, id: string) => ev.schools.find((s) => s.id === id)!;
const room = (ev: Evaluation, id: string) => ev.classrooms.find((c) => c.id === id)!;
const codes = (r: { reasons: { code: string }[] }) => r.reasons.map((x) => x.code);

describe('rollups from a fixture city in a real InfluxDB', () => {
  it('writes one usage_day per device per teaching day, none on holidays, weekends or in vacations', async () => {
    const rows = await storage.rows('SELECT count(teaching_b) AS n FROM usage_day GROUP BY time(1d, -8h)');
    const byDay = Object.fromEntries(
      rows
        .filter((r) => (r.n as number) > 0)
        .map((r) => [new Date((r.time as number) + 8 * 3_600_000).toISOString().slice(0, 10), r.n]),
    );
    // 5 classroom devices (4 displays + 1 teacher PC) on Thu 8, Fri 9 and the make-up Saturday 10.
    expect(byDay).toEqual({ '2026-10-08': 5, '2026-10-09': 5, '2026-10-10': 5 });
    const [pnA2] = await storage.rows(
      "SELECT sum(use_b) AS use_b, sum(teaching_b) AS t, sum(periods_used) AS pu FROM usage_day WHERE device = 'pn-a2'",
    );
    // In use in 4 buckets of the first period each day; its use at a break, an evening, a holiday and in
    // the vacation is not teaching time.
    expect(pnA2).toMatchObject({ use_b: 12, t: 48, pu: 3 });
  });

  it('rolling a day up again gives the same points (late data is absorbed by re-running)', async () => {
    const before = await storage.rows(
      "SELECT * FROM usage_day WHERE time >= '2026-10-07T16:00:00Z' AND time < '2026-10-08T16:00:00Z'",
    );
    const rollup = cityRollup(storage, registry, calendars);
    await rollup.day('2026-10-08');
    const after = await storage.rows(
      "SELECT * FROM usage_day WHERE time >= '2026-10-07T16:00:00Z' AND time < '2026-10-08T16:00:00Z'",
    );
    expect(after).toEqual(before);
    expect(after).toHaveLength(5);
  });
});

describe('校校通 per school (cn-2020), worked by hand in tests/helpers/city.ts', () => {
  it('A attains: up all teaching time, 100 Mbps contract ÷ 2 classes, 85 % in 2 of 48 buckets is not congestion', async () => {
    const a = school(await week(), 'A');
    expect(a.teachingDays).toBe(3);
    expect(a.uplink).toEqual({
      monitored: true,
      availabilityPct: 100,
      capacityMbps: 100,
      capacitySource: 'contract',
      perClassMbps: 50,
      busyPct: 4.17,
      congested: false,
      p95MaxDayPct: 85,
    });
    expect(a.xxt).toEqual({ attained: true, reasons: [] });
  });

  it('B fails on capacity, per-class bandwidth and congestion, each with its figures', async () => {
    const b = school(await week(), 'B');
    expect(codes(b.xxt)).toEqual(['uplink_capacity_low', 'per_class_bandwidth_low', 'uplink_congested']);
    expect(b.xxt.reasons.map((r) => r.message)).toEqual([
      'uplink 10 Mbps, below 100 Mbps',
      '3.33 Mbps per class (10 Mbps ÷ 3 classes), below 4 Mbps for rural schools',
      '95th-percentile utilisation at or above 80 % (20.83 % of teaching time)',
    ]);
    expect(b.uplink.capacitySource).toBe('polled');
  });

  it('C fails on availability: 8 buckets without readings and 2 down → 38 of 48', async () => {
    const c = school(await week(), 'C');
    expect(c.uplink.availabilityPct).toBe(79.17);
    expect(codes(c.xxt)).toEqual(['uplink_availability_low']);
  });

  it('the 2017 profile judges B only on congestion (10 Mbps ≥ 10, 3.33 ≥ 2 Mbps per rural class)', async () => {
    expect(codes(school(await week('cn-2017'), 'B').xxt)).toEqual(['uplink_congested']);
  });
});

describe('班班通 per classroom', () => {
  it('gives each classroom its reasons', async () => {
    const ev = await week();
    expect(room(ev, 'A1')).toMatchObject({
      attained: true,
      onlineDays: 3,
      periodsUsedPerWeek: 10,
      faultyPct: 0,
    });
    // 3 periods in 3 teaching days = 0.6 of a 5-day week → 5 per week.
    expect(room(ev, 'A2')).toMatchObject({ attained: false, periodsUsedPerWeek: 5 });
    expect(codes(room(ev, 'A2'))).toEqual(['used_too_little']);
    expect(codes(room(ev, 'B1'))).toEqual([
      'offline_too_often',
      'unhealthy',
      'used_too_little',
      'school_not_connected',
    ]);
    expect(room(ev, 'B1')).toMatchObject({ onlineDays: 1, faultyPct: 25, periodsUsedPerWeek: 3.3 });
    expect(codes(room(ev, 'B2'))).toEqual(['not_equipped', 'school_not_connected']);
    expect(codes(room(ev, 'C1'))).toEqual(['school_not_connected']);
    expect(ev.classrooms.find((c) => c.id === 'A-lab')).toBeUndefined(); // not a class's room
  });

  it('counts unmonitored classes as not attained, per school', async () => {
    const ev = await week();
    expect(school(ev, 'A').bbt).toEqual({ classes: 2, attained: 1, unmonitored: 0 });
    expect(school(ev, 'B').bbt).toEqual({ classes: 3, attained: 0, unmonitored: 1 });
    expect(school(ev, 'C').bbt).toEqual({ classes: 1, attained: 0, unmonitored: 0 });
  });
});

describe('rollups per region', () => {
  it('sums the city, the counties, urban/rural and levels; a county scope sees only itself and below', async () => {
    const ev = await week();
    const rows = rollups(ev, registry(), undefined);
    const get = (region: string, split = 'all', group = 'all') =>
      rows.find((r) => r.region === region && r.split === split && r.group === group)!;
    expect(get('330000/330100')).toMatchObject({
      regionName: '杭州市',
      schools: 3,
      schoolsAttained: 1,
      xxtPct: 33.33,
      classes: 6,
      classesAttained: 1,
      bbtPct: 16.67,
      classesUnmonitored: 1,
      students: 175,
      teachers: 14,
      teacherComputers: 1,
      teachersPerComputer: 14,
      studentsPerComputer: null,
    });
    expect(get('330000/330100/330106')).toMatchObject({
      schools: 2,
      schoolsAttained: 1,
      classes: 5,
      bbtPct: 20,
      teachersPerComputer: 11,
    });
    expect(get('330000/330100/330106', 'area', 'rural')).toMatchObject({
      schools: 1,
      schoolsAttained: 0,
      xxtPct: 0,
    });
    expect(get('330000/330100', 'level', 'junior')).toMatchObject({ schools: 1, classes: 1 });

    const county = rollups(ev, registry(), '330000/330100/330108');
    expect(new Set(county.map((r) => r.region))).toEqual(new Set(['330000/330100/330108']));
    expect(county.find((r) => r.split === 'all')).toMatchObject({ schools: 1, students: 40 });
  });
});

describe('usage audit', () => {
  it('gives powered-on and in-use hours in teaching time, days used, and the idle list', async () => {
    const ev = await week('cn-2020', 2);
    const dev = (id: string) => ev.devices.find((d) => d.id === id)!;
    expect(dev('pn-a1')).toMatchObject({
      poweredOnHours: 4,
      inUseHours: 4,
      daysUsed: 3,
      usedDaysPct: 100,
      idle: false,
    });
    expect(dev('pn-a2')).toMatchObject({
      poweredOnHours: 4,
      inUseHours: 1,
      lastUsed: '2026-10-10',
      idleTeachingDays: 0,
    });
    expect(dev('pj-b1')).toMatchObject({
      poweredOnHours: 1.33,
      daysUsed: 1,
      usedDaysPct: 33.33,
      lastUsed: '2026-10-08',
      idleTeachingDays: 2, // Fri 9 and the make-up Sat 10
      idle: true,
      batch: '2019-西湖-01',
    });
    expect(dev('pc-a1')).toMatchObject({
      poweredOnHours: 2.67,
      daysUsed: 2,
      idleTeachingDays: 1,
      idle: false,
    });
    expect(ev.devices.filter((d) => d.idle).map((d) => d.id)).toEqual(['pj-b1']);
    expect(ev.devices.some((d) => d.kind === 'router')).toBe(false);
  });
});

describe('a vacation week', () => {
  it('has no teaching time: nothing is judged, and its readings count nowhere', async () => {
    const data = await loadPeriod(
      newDays(),
      { from: '2027-02-01', to: '2027-02-07' },
      lookbackDaysFor(20),
      teaches(),
    );
    const ev = evaluate(data, registry(), calendars, profiles.get('cn-2020')!);
    for (const s of ev.schools) {
      expect(s.teachingDays).toBe(0);
      expect(s.xxt).toEqual({
        attained: null,
        reasons: [expect.objectContaining({ code: 'no_teaching_time' })],
      });
    }
    expect(ev.classrooms.every((c) => c.attained === null)).toBe(true);
    const city = rollups(ev, registry(), undefined).find(
      (r) => r.region === '330000/330100' && r.split === 'all',
    )!;
    expect(city).toMatchObject({ schools: 0, schoolsNotApplicable: 3, xxtPct: null });
    expect(ev.coverage).toEqual({ rolledDays: 0, teachingDates: 0 });
  });

  it('the holiday week reports its rollup coverage: 3 of 3 teaching dates rolled up', async () => {
    expect((await week()).coverage).toEqual({ rolledDays: 3, teachingDates: 3 });
  });
});

describe('calendar changes and gaps', () => {
  const evalWith = async (cals: Calendars) => {
    const data = await loadPeriod(newDays(), WEEK, lookbackDaysFor(20), teachingBuckets(registry(), cals));
    return evaluate(data, registry(), cals, profiles.get('cn-2020')!);
  };

  it('a school without a calendar fails with no_calendar and stays in the denominators', async () => {
    const ev = await evalWith(new Calendars([{ ...CITY_CALENDAR, regions: ['330106'] }]));
    expect(school(ev, 'C').xxt).toEqual({
      attained: false,
      reasons: [expect.objectContaining({ code: 'no_calendar' })],
    });
    const city = rollups(ev, registry(), undefined).find(
      (r) => r.region === '330000/330100' && r.split === 'all',
    )!;
    expect(city).toMatchObject({ schools: 3, schoolsNotApplicable: 0, schoolsAttained: 1 });
  });

  it('a day declared a holiday after it was rolled up (a typhoon closure) no longer counts', async () => {
    const typhoon = new Calendars([
      {
        ...CITY_CALENDAR,
        holidays: [...CITY_CALENDAR.holidays!, { name: '台风停课', start: '2026-10-09', end: '2026-10-09' }],
      },
    ]);
    const ev = await evalWith(typhoon);
    expect(school(ev, 'A').teachingDays).toBe(2);
    // C's uplink gaps were on Thursday and Friday: with Friday gone, 38 − 14 … recounted from Thu and Sat only.
    expect(school(ev, 'C').uplink.availabilityPct).toBe(75); // Thu: 8 of 16 up; Sat: 16 of 16 → 24 of 32
    expect(ev.devices.find((d) => d.id === 'pj-b1')).toMatchObject({ daysUsed: 1, idleTeachingDays: 1 });
  });

  it('today so far: only class periods that have ended count, so the day is not judged on periods to come', async () => {
    // Roll Thursday up as if it were 08:45: the first period (08:00-08:40) has ended, the second has not.
    const r = cityRollup(storage, registry, calendars);
    await r.day('2026-10-08', Date.parse('2026-10-08T08:45:00+08:00'));
    try {
      const [a] = await storage.rows(
        "SELECT teaching_b, data_b, up_b FROM uplink_day WHERE school = 'A' AND time = '2026-10-07T16:00:00Z'",
      );
      expect(a).toMatchObject({ teaching_b: 8, data_b: 8, up_b: 8 });
      const ev = await week();
      // A's two 85 % buckets fell in Thursday's first period: 2 of 40 counted buckets is now 5 %: congested.
      expect(school(ev, 'A').uplink).toMatchObject({ availabilityPct: 100, busyPct: 5, congested: true });
      // A1 used both periods on Fri and Sat and the one elapsed period on Thu: 5 periods in 2.5 days' worth
      // of teaching time (half a 5-day week) is still 10 a week.
      expect(room(ev, 'A1')).toMatchObject({ periodsUsedPerWeek: 10, onlineDays: 3 });
      expect(codes(room(ev, 'A1'))).toEqual(['school_not_connected']);
    } finally {
      await r.day('2026-10-08'); // the whole day again, for the tests after this one
    }
  });
});

// Last in this file: it adds a late reading to the fixture.
describe('the day cache', () => {
  it('re-reads a day whose rollup was re-run (late data from a spool), and only that day', async () => {
    const days = new DayCache({ storage, checkEveryMs: 0, maxDays: 400 });
    const before = await loadPeriod(days, WEEK, lookbackDaysFor(20), teaches());
    expect(before.usage.get('pj-b1')).toMatchObject({ onlineDays: 1 });
    const loads = days.loads;
    // A spooled reading of the projector on Friday arrives late; the next rollup run rewrites Friday.
    storage.write([
      {
        measurement: 'display',
        tags: { school: 'B', device: 'pj-b1', kind: 'projector' },
        fields: { on: 1, in_use: 0, error_count: 0 },
        ts: Date.parse('2026-10-09T08:02:30+08:00'),
      },
    ]);
    await storage.flush();
    await cityRollup(storage, registry, calendars).day('2026-10-09');
    const after = await loadPeriod(days, WEEK, lookbackDaysFor(20), teaches());
    expect(after.usage.get('pj-b1')).toMatchObject({ onlineDays: 2, onlineB: 17 });
    expect(days.loads - loads).toBe(1); // Friday only
  });
});
