import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type CalendarDef, Calendars, localMidnightMs } from '../../common/calendar.js';
import { DayCache } from '../../common/figures/days.js';
import { evaluate } from '../../common/figures/evaluate.js';
import { loadPeriod, lookbackDaysFor, teachingBuckets } from '../../common/figures/load.js';
import { type Profile, profileSet } from '../../common/figures/profiles.js';
import { type RollupRow, rollups } from '../../common/figures/regions.js';
import { Reports } from '../../common/figures/reports.js';
import type { Evaluation } from '../../common/figures/results.js';
import { roundHalfAway } from '../../common/figures/rounding.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { AnyPoint } from '../../contracts/influx.js';
import type { Registry } from '../../contracts/registry.js';
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
      // Not probed (no probe readings): quality not judged.
      probedPct: 0,
      reachablePct: null,
      qualityLowPct: null,
      lossPct: null,
      linkQualityLow: null,
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
      judgedSchools: 3,
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
      onUnusedHours: 3,
      periodsUsed: 3, // 4 of 8 buckets of the first period each day: half of it, used
      usedHoursPerWeek: 1.67, // 1 hour in 3 teaching days, 0.6 week
      lastUsed: '2026-10-10',
      idleTeachingDays: 0,
      // On after the last period (09:40, 20:00 on Thursday) and on the 国庆 holiday (6 October): 3 buckets.
      leftOnHours: 0.25,
      // The fixture's readings carry no activity evidence, as those of a v1 agent.
      useBasis: 'power',
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
    // Every registered school is counted; none is judged, so no rate and no ratio.
    expect(city).toMatchObject({
      schools: 3,
      judgedSchools: 0,
      schoolsNotApplicable: 3,
      xxtPct: null,
      students: 0,
      teachersPerComputer: null,
    });
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
    // Its class room carries the school's reason, not "offline", "used too little" and "not connected":
    // nothing about the room was measured, its panel's readings included.
    expect(room(ev, 'C1')).toMatchObject({
      attained: false,
      reasons: [{ code: 'no_calendar', message: 'no school calendar covers this school' }],
      teachingDays: 0,
      periodsUsedPerWeek: null,
    });
    const city = rollups(ev, registry(), undefined).find(
      (r) => r.region === '330000/330100' && r.split === 'all',
    )!;
    expect(city).toMatchObject({ schools: 3, judgedSchools: 3, schoolsNotApplicable: 0, schoolsAttained: 1 });
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

// ---- the definitions of api/README.md#definitions, each on a fixture where it makes a difference ---------------

/**
 * A second fixture city (its own database), built so that every definition changes a figure:
 * - 西湖区 330106 (calendar def-x, as the city above: Thu 8, Fri 9 and the make-up Sat 10 teach in week 41):
 *   A (6 classes, 2 rooms: 4 unmonitored; 100 Mbps contract ÷ 6 = 16.67 Mbps per class; uplink down in 1 of
 *   48 buckets = 97.92 %), B (no uplink registered);
 * - 滨江区 330108 (def-z: no make-up Saturday; building works close it 09-10 … 09-30): Z, uplink registered but
 *   silent; its panels were used before the period (pn-z1 on 09-04, pn-z2 on 09-08) and after it (pn-z2, 10-12);
 * - 余杭区 330110 (def-y: a typhoon closes it all week 41): Y, 1,000 students, readings that must count nowhere;
 * - 临安区 330112 (no calendar): N, readings that must count nowhere.
 * Rolled up: 09-04, 09-07 … 09-09, 10-05 … 10-12; 10-13 is not.
 */
const P2 = ['08:00-08:40', '08:50-09:30'];
const WEEKDAY_PERIODS = { mon: P2, tue: P2, wed: P2, thu: P2, fri: P2 };
const TERM = [{ name: '2026—2027 学年第一学期', start: '2026-09-01', end: '2027-01-22' }];
const GUOQING = { name: '国庆节', start: '2026-10-01', end: '2026-10-07' };
const DEF_X: CalendarDef = {
  id: 'def-x',
  regions: ['330106'],
  terms: TERM,
  holidays: [{ name: '中秋节', start: '2026-09-25', end: '2026-09-25' }, GUOQING],
  makeUpDays: [{ date: '2026-10-10', as: 'thu' }],
  periods: WEEKDAY_PERIODS,
};
const DEF_Y: CalendarDef = {
  ...DEF_X,
  id: 'def-y',
  regions: ['330110'],
  holidays: [...DEF_X.holidays!, { name: '台风停课', start: '2026-10-05', end: '2026-10-11' }],
};
const DEF_Z: CalendarDef = {
  id: 'def-z',
  regions: ['330108'],
  terms: TERM,
  holidays: [{ name: '校舍改造停课', start: '2026-09-10', end: '2026-09-30' }, GUOQING],
  periods: WEEKDAY_PERIODS,
};
const defCalendars = new Calendars([DEF_X, DEF_Y, DEF_Z]);
const school0 = { level: 'primary', classes: 1, students: 0, teachers: 0 } as const;
const DEF: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
    { id: '330108', name: '滨江区', level: 'county', parent: '330100' },
    { id: '330110', name: '余杭区', level: 'county', parent: '330100' },
    { id: '330112', name: '临安区', level: 'county', parent: '330100' },
  ],
  schools: [
    {
      ...school0,
      id: 'A',
      name: '西湖区第二小学',
      region: '330106',
      area: 'urban',
      classes: 6,
      students: 100,
      teachers: 10,
      uplinkDevice: 'gw-a',
      uplinkInterface: 1,
      contractedMbps: 100,
    },
    {
      ...school0,
      id: 'B',
      name: '龙坞教学点',
      region: '330106',
      area: 'rural',
      classes: 2,
      students: 60,
      teachers: 4,
    },
    {
      ...school0,
      id: 'Z',
      name: '滨江区第二初中',
      region: '330108',
      area: 'urban',
      level: 'junior',
      classes: 2,
      students: 50,
      teachers: 5,
      uplinkDevice: 'gw-z',
      uplinkInterface: 1,
      contractedMbps: 1000,
    },
    {
      ...school0,
      id: 'Y',
      name: '余杭区实验小学',
      region: '330110',
      area: 'urban',
      students: 1000,
      teachers: 50,
      uplinkDevice: 'gw-y',
      uplinkInterface: 1,
      contractedMbps: 1000,
    },
    {
      ...school0,
      id: 'N',
      name: '临安区山区小学',
      region: '330112',
      area: 'rural',
      students: 40,
      teachers: 2,
      uplinkDevice: 'gw-n',
      uplinkInterface: 1,
      contractedMbps: 100,
    },
  ],
  classrooms: [
    { id: 'A1', school: 'A', name: '三(1)班', isClass: true },
    { id: 'A2', school: 'A', name: '三(2)班', isClass: true },
    { id: 'B1', school: 'B', name: '复式班', isClass: true },
    { id: 'Z1', school: 'Z', name: '八(1)班', isClass: true },
    { id: 'Z2', school: 'Z', name: '八(2)班', isClass: true },
    { id: 'Y1', school: 'Y', name: '一(1)班', isClass: true },
    { id: 'N1', school: 'N', name: '一年级', isClass: true },
  ],
  devices: [
    { id: 'gw-a', school: 'A', kind: 'router' },
    { id: 'pn-a1', school: 'A', classroom: 'A1', kind: 'panel' },
    { id: 'tp-a1', school: 'A', classroom: 'A1', kind: 'teacher_pc' },
    { id: 'pn-a2', school: 'A', classroom: 'A2', kind: 'panel' },
    { id: 'sp-a1', school: 'A', kind: 'student_pc' },
    { id: 'sp-a2', school: 'A', kind: 'student_pc' },
    { id: 'pn-b1', school: 'B', classroom: 'B1', kind: 'panel' },
    { id: 'sp-b1', school: 'B', kind: 'student_pc' },
    { id: 'gw-z', school: 'Z', kind: 'router' },
    { id: 'pn-z1', school: 'Z', classroom: 'Z1', kind: 'panel', batch: '2024-滨江-03' },
    { id: 'pn-z2', school: 'Z', classroom: 'Z2', kind: 'panel', batch: '2024-滨江-03' },
    { id: 'sp-z1', school: 'Z', kind: 'student_pc' },
    { id: 'gw-y', school: 'Y', kind: 'router' },
    { id: 'pn-y1', school: 'Y', classroom: 'Y1', kind: 'panel' },
    { id: 'sp-y1', school: 'Y', kind: 'student_pc' },
    { id: 'gw-n', school: 'N', kind: 'router' },
    { id: 'pn-n1', school: 'N', classroom: 'N1', kind: 'panel' },
    { id: 'sp-n1', school: 'N', kind: 'student_pc' },
  ],
};

/** The 16 five-minute buckets of a day's two periods: [period, index in it, the bucket's middle]. */
function defBuckets(date: string): [number, number, number][] {
  const midnight = localMidnightMs(date);
  return [8 * 60, 8 * 60 + 50].flatMap((m, p) =>
    Array.from(
      { length: 8 },
      (_, i) => [p, i, midnight + m * 60_000 + i * 300_000 + 150_000] as [number, number, number],
    ),
  );
}

function defPoints(): AnyPoint[] {
  const pts: AnyPoint[] = [];
  const display = (school: string, device: string, ts: number, inUse: boolean, errors = 0) =>
    pts.push({
      measurement: 'display',
      tags: { school, device, kind: 'panel' },
      fields: { on: 1, in_use: inUse ? 1 : 0, error_count: errors, power: 'on' },
      ts,
    });
  const host = (school: string, device: string, ts: number) =>
    pts.push({
      measurement: 'host',
      tags: { school, device, kind: 'student_pc' },
      fields: { cpu_pct: 10 },
      ts,
    });
  const uplink = (school: string, ts: number, up: number) =>
    pts.push({
      measurement: 'iface',
      tags: {
        school,
        device: `gw-${school.toLowerCase()}`,
        kind: 'router',
        ifname: 'Gi0/0/1',
        uplink: 'true',
      },
      fields: { util_in_pct: 30, util_out_pct: 10, oper_up: up, speed_mbps: 1000 },
      ts,
    });
  for (const date of ['2026-10-08', '2026-10-09', '2026-10-10']) {
    const thu = date === '2026-10-08';
    const fri = date === '2026-10-09';
    for (const [p, i, ts] of defBuckets(date)) {
      const first = thu && p === 0 && i === 0;
      uplink('A', ts, first ? 0 : 1); // down 1 of 48 buckets
      display('A', 'pn-a1', ts, thu || fri, first ? 1 : 0); // 4 periods used; a fault in 1 of 48 buckets
      // Thu: in use 3 of 8 buckets of each period (no period used); Fri: 4 of 8 of the first (one used).
      display('A', 'pn-a2', ts, (thu && i < 3) || (fri && p === 0 && i < 4));
      host('A', 'sp-a1', ts);
      if (fri) host('A', 'tp-a1', ts);
      display('B', 'pn-b1', ts, true);
      if (thu) host('B', 'sp-b1', ts);
      if (thu) host('Z', 'sp-z1', ts);
      if (!date.endsWith('10')) {
        display('Z', 'pn-z1', ts, false); // on, never in use
        display('Z', 'pn-z2', ts, false);
      }
      // The closed county and the county without a calendar: readings that must count nowhere.
      uplink('Y', ts, 1);
      display('Y', 'pn-y1', ts, true);
      host('Y', 'sp-y1', ts);
      uplink('N', ts, 1);
      display('N', 'pn-n1', ts, true);
      host('N', 'sp-n1', ts);
    }
  }
  // Z's panels before and after the period.
  for (const [date, device] of [
    ['2026-09-04', 'pn-z1'],
    ['2026-09-08', 'pn-z2'],
    ['2026-10-12', 'pn-z2'],
  ] as const)
    for (const [, , ts] of defBuckets(date)) display('Z', device, ts, true);
  return pts;
}

describe('definitions (api/README.md#definitions) on a fixture where each one makes a difference', () => {
  let defStorage: Storage;
  let defStore: RegistryStore;
  const TODAY_MS = Date.parse('2026-12-01T12:00:00+08:00');
  const W41 = { from: '2026-10-05', to: '2026-10-11' };
  const reports = () =>
    new Reports({
      days: new DayCache({ storage: defStorage, checkEveryMs: 0, maxDays: 400 }),
      registry: defStore,
      calendars: () => defCalendars,
      ttlMs: 0,
      now: () => TODAY_MS,
    });
  const cn2020 = profiles.get('cn-2020')!;
  /** cn-2020 with thresholds set exactly at A's and A1's rounded figures. */
  const edge: Profile = {
    ...cn2020,
    id: 'edge',
    minUplinkAvailabilityPct: 97.92,
    perClassMbps: { urban: 16.67, rural: 4 },
    maxFaultyPct: 2.08,
    minUsePeriodsPerWeek: 6.7,
  };
  const cityRow = (rows: RollupRow[], region = '330000/330100') =>
    rows.find((r) => r.region === region && r.split === 'all')!;

  beforeAll(async () => {
    defStore = new RegistryStore(join(dir, 'definitions.json')).load();
    await defStore.import([{ name: 'definitions.yaml', data: Buffer.from(stringify(DEF)) }]);
    defStorage = testStorage(influxd.url, { database: 'definitions' }).storage;
    await defStorage.start();
    defStorage.write(defPoints());
    await defStorage.flush();
    const rollup = cityRollup(defStorage, () => defStore.index, defCalendars);
    for (const d of ['2026-09-04', '2026-09-07', '2026-09-08', '2026-09-09']) await rollup.day(d);
    await rollup.range('2026-10-05', '2026-10-12');
  });
  afterAll(async () => {
    await defStorage?.stop();
  });

  it('class rooms of a school no calendar covers carry no_calendar and nothing else', async () => {
    const ev = await reports().evaluation(W41, cn2020);
    expect(school(ev, 'N').xxt).toEqual({
      attained: false,
      reasons: [{ code: 'no_calendar', message: 'no school calendar covers this school' }],
    });
    // Its panel reported in use all week; without a calendar none of it is teaching time.
    expect(room(ev, 'N1')).toEqual({
      id: 'N1',
      school: 'N',
      name: '一年级',
      attained: false,
      reasons: [{ code: 'no_calendar', message: 'no school calendar covers this school' }],
      equipped: true,
      onlineDays: 0,
      teachingDays: 0,
      periodsUsedPerWeek: null,
      faultyPct: null,
      onHours: null,
      inUseHours: null,
      onUnusedHours: null,
      periodsUsed: null,
      usedHoursPerWeek: null,
      useBasis: null,
      leftOnHours: null,
    });
    expect(school(ev, 'N').bbt).toEqual({ classes: 1, attained: 0, unmonitored: 0 });
  });

  it("class rooms carry their school's not-judged reason: not_rolled_up, no_teaching_time", async () => {
    // Tuesday 13 October teaches everywhere with a calendar and has not been rolled up.
    const ev = await reports().evaluation({ from: '2026-10-13', to: '2026-10-13' }, cn2020);
    const notRolled = {
      code: 'not_rolled_up',
      message: '1 teaching days in the period, none rolled up yet',
    };
    for (const id of ['A', 'B', 'Z', 'Y'])
      expect(school(ev, id).xxt).toEqual({ attained: null, reasons: [notRolled] });
    for (const id of ['A1', 'A2', 'B1', 'Z1', 'Z2', 'Y1'])
      expect(room(ev, id)).toMatchObject({ attained: null, reasons: [notRolled], periodsUsedPerWeek: null });
    expect(room(ev, 'N1')).toMatchObject({ attained: false, reasons: [{ code: 'no_calendar' }] });
    // In week 41 Y's typhoon closure leaves it no teaching time: the room says the same as the school.
    const w41 = await reports().evaluation(W41, cn2020);
    expect(room(w41, 'Y1').reasons).toEqual(school(w41, 'Y').xxt.reasons);
    expect(codes(room(w41, 'Y1'))).toEqual(['no_teaching_time']);
  });

  it('rollups count every registered school, and judge rates and 生机比/师机比 over the judged ones', async () => {
    const r = reports();
    const ev = await r.evaluation(W41, cn2020);
    expect(cityRow(r.rollups(ev, undefined))).toMatchObject({
      schools: 5,
      judgedSchools: 4, // A, B, Z, and N (failed: no calendar); not Y (no teaching time)
      schoolsNotApplicable: 1,
      schoolsAttained: 0,
      xxtPct: 0,
      classes: 11, // A 6 + B 2 + Z 2 + N 1
      classesUnmonitored: 5,
      students: 250, // Y's 1,000 are not judged: (250 + 1,000) ÷ 3 would be 416.67
      teachers: 21,
      studentComputers: 3, // sp-a1, sp-b1, sp-z1; not sp-a2 (silent), sp-y1 or sp-n1 (no teaching time)
      teacherComputers: 1,
      studentsPerComputer: 83.33,
      teachersPerComputer: 21,
    });
    expect(cityRow(r.rollups(ev, undefined), '330000/330100/330106')).toMatchObject({
      schools: 2,
      judgedSchools: 2,
      students: 160,
      studentComputers: 2,
      studentsPerComputer: 80,
    });
    expect(cityRow(r.rollups(ev, undefined), '330000/330100/330110')).toMatchObject({
      schools: 1,
      judgedSchools: 0,
      schoolsNotApplicable: 1,
      xxtPct: null,
      bbtPct: null,
      students: 0,
      studentsPerComputer: null,
    });
  });

  it('uplink: null when not known (not judged, no calendar) or not measured (no uplink registered), 0 when silent', async () => {
    const ev = await reports().evaluation(W41, cn2020);
    const notKnown = {
      monitored: null,
      availabilityPct: null,
      busyPct: null,
      congested: null,
      p95MaxDayPct: null,
      probedPct: null,
      reachablePct: null,
      qualityLowPct: null,
      lossPct: null,
      linkQualityLow: null,
    };
    expect(school(ev, 'Y').uplink).toEqual({
      ...notKnown,
      capacityMbps: 1000,
      capacitySource: 'contract',
      perClassMbps: 1000,
    });
    expect(school(ev, 'N').uplink).toMatchObject(notKnown);
    expect(school(ev, 'B').uplink).toEqual({
      ...notKnown,
      monitored: false,
      capacityMbps: null,
      capacitySource: null,
      perClassMbps: null,
    });
    expect(school(ev, 'B').xxt).toEqual({
      attained: false,
      reasons: [
        {
          code: 'no_uplink_registered',
          message: 'no uplink device registered for this school: its availability is not measured',
        },
      ],
    });
    // A registered uplink without a single reading: down all teaching time, as the rollup counts it.
    expect(school(ev, 'Z').uplink).toMatchObject({ monitored: false, availabilityPct: 0, congested: null });
    expect(codes(school(ev, 'Z').xxt)).toEqual(['uplink_not_monitored']);
  });

  it('a day is used when at least one class period is: in-use time under half a period is not', async () => {
    const ev = await reports().evaluation(W41, cn2020, 5);
    expect(ev.devices.find((d) => d.id === 'pn-a2')).toMatchObject({
      inUseHours: 0.83, // 3 + 3 buckets on Thu, 4 on Fri: 50 minutes
      poweredOnHours: 4,
      daysUsed: 1, // Thu had in-use time but no used period
      teachingDays: 3,
      usedDaysPct: 33.33,
      lastUsed: '2026-10-09',
      idleTeachingDays: 1,
    });
    expect(room(ev, 'A2')).toMatchObject({ periodsUsedPerWeek: 1.7, onlineDays: 3 }); // 1 period ÷ 0.6 week
  });

  it('lastUsed looks back before the period, far enough for idleDays teaching days, never after its end', async () => {
    const ev = await reports().evaluation(W41, cn2020, 5);
    const dev = (id: string) => ev.devices.find((d) => d.id === id)!;
    // Used on 09-04 only, before the look-back: idle on 09-07, 08, 09, 10-08, 09 (10-10 is a Saturday for Z).
    expect(dev('pn-z1')).toMatchObject({ lastUsed: null, idleTeachingDays: 5, idle: true, daysUsed: 0 });
    // Used on 09-08 and on 10-12, after the period: the later use does not count.
    expect(dev('pn-z2')).toMatchObject({ lastUsed: '2026-09-08', idleTeachingDays: 3, idle: false });
    expect(ev.devices.filter((d) => d.idle).map((d) => d.id)).toEqual(['sp-a2', 'pn-z1']);
    expect(dev('sp-a2')).toMatchObject({ lastUsed: null, idleTeachingDays: 6 }); // 09-07, 08, 09, 10-08, 09, 10
    // Five teaching days by every calendar before 11 October: def-z's building works push it back to 09-07.
    expect(ev.lookbackFrom).toBe('2026-09-07');

    // With the profile's 20 days the look-back reaches def-z's first day of term (nothing before it can count).
    const ev20 = await reports().evaluation(W41, cn2020);
    expect(ev20.lookbackFrom).toBe('2026-09-01');
    expect(ev20.devices.find((d) => d.id === 'pn-z1')).toMatchObject({
      lastUsed: '2026-09-04',
      idleTeachingDays: 5,
      idle: false,
    });
    // def-x alone: five teaching days back from 11 October is 29 September.
    expect(lookbackDaysFor(5, { calendars: [defCalendars.get('def-x')!], to: '2026-10-11' })).toBe(12); // 09-29
  });

  it("coverage counts only the teaching dates of the scope's own calendars", async () => {
    const r = reports();
    const ev = await r.evaluation(W41, cn2020);
    expect(ev.coverage).toEqual({ rolledDays: 3, teachingDates: 3 }); // Thu, Fri, Sat (def-x's make-up day)
    expect(r.coverage(ev, '330000/330100/330108')).toEqual({ rolledDays: 2, teachingDates: 2 }); // no Saturday
    expect(r.coverage(ev, '330000/330100/330110')).toEqual({ rolledDays: 0, teachingDates: 0 }); // closed
    expect(r.coverage(ev, '330000/330100/330112')).toEqual({ rolledDays: 0, teachingDates: 0 }); // no calendar
    const next = await r.evaluation({ from: '2026-10-12', to: '2026-10-13' }, cn2020);
    expect(r.coverage(next, '330000/330100/330110')).toEqual({ rolledDays: 1, teachingDates: 2 });
  });

  it('thresholds judge unrounded figures: a figure rounded onto its threshold still fails, and says so', async () => {
    const ev = await reports().evaluation(W41, edge);
    expect(school(ev, 'A').uplink).toMatchObject({ availabilityPct: 97.92, perClassMbps: 16.67 });
    expect(school(ev, 'A').xxt.reasons).toEqual([
      {
        code: 'uplink_availability_low',
        message: 'uplink up 97.917 % of teaching time (47 of 48 buckets), below 97.92 %',
      },
      {
        code: 'per_class_bandwidth_low',
        message: '16.667 Mbps per class (100 Mbps ÷ 6 classes), below 16.67 Mbps for urban schools',
      },
    ]);
    expect(room(ev, 'A1')).toMatchObject({ periodsUsedPerWeek: 6.7, faultyPct: 2.08, attained: false });
    expect(room(ev, 'A1').reasons.map((r) => r.message)).toEqual([
      'faults reported in 2.083 % of online teaching time, above 2.08 %',
      'used in 6.67 class periods per teaching week, below 6.7',
      "the school's uplink does not attain 校校通",
    ]);
  });

  it('rounds half away from zero, with one helper', () => {
    expect(roundHalfAway(1.005, 2)).toBe(1.01); // 100.49999999999999 in binary: still the half
    expect(roundHalfAway(2.5, 0)).toBe(3);
    expect(roundHalfAway(-2.5, 0)).toBe(-3);
    expect(roundHalfAway(0.125, 2)).toBe(0.13);
    expect(roundHalfAway((100 * 2) / 3, 2)).toBe(66.67);
    expect(roundHalfAway(9.95, 1)).toBe(10);
    expect(roundHalfAway(9.9499, 1)).toBe(9.9);
    expect(roundHalfAway(0.124999, 2)).toBe(0.12); // close to a half is not a half
    expect(roundHalfAway(-0.001, 2)).toBe(0);
    expect(Object.is(roundHalfAway(-0.001, 2), -0)).toBe(false);
  });
});

// Last in this file: it adds a late reading to the fixture.
describe('the day cache', () => {
  it('re-reads a day whose rollup was re-run (late data from a spool), and only that day', async () => {
    const days = new DayCache({ storage, checkEveryMs: 0, maxDays: 400 });
    const before = await loadPeriod(days, WEEK, lookbackDaysFor(20), teaches());
    expect(before.usage.get('B/pj-b1')).toMatchObject({ onlineDays: 1 });
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
    expect(after.usage.get('B/pj-b1')).toMatchObject({ onlineDays: 2, onlineB: 17 });
    expect(days.loads - loads).toBe(1); // Friday only
  });
});
