import { type CalendarDef, type Calendars, localMidnightMs } from '../../common/calendar.js';
import { silentLogger } from '../../common/log.js';
import type { RegistryIndex } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { AnyPoint } from '../../contracts/influx.js';
import type { Registry } from '../../contracts/registry.js';
import { Rollup } from '../../rollup/rollup.js';

/**
 * A small fixture city whose attainment is worked out by hand in tests/api/attainment.test.ts.
 *
 * Calendar: term 2026-09-01 … 2027-01-22; 中秋 2026-09-25, 国庆 2026-10-01 … 07; 调休 Saturday 2026-10-10 (as
 * Thursday). Two class periods per weekday, 08:00-08:40 and 08:50-09:30 CST: 8 five-minute buckets each.
 * The week 2026-10-05 … 11 then has exactly three teaching days: Thu 8, Fri 9 and the make-up Sat 10.
 *
 * Schools (西湖区 330106 unless said):
 * - A 3301060001 urban primary, 2 classes, 90 students, 6 teachers, contract 100 Mbps. Rooms A1 (panel fully
 *   used; a teacher PC online on Thu and Fri) and A2 (panel used 4 of 8 buckets of the first period only).
 *   Uplink up throughout, 30 % utilisation but 85 % in 2 of 48 buckets (4.2 %: not congested).
 * - B 3301060002 rural teaching point, 3 classes, 45 students, 5 teachers, no contract; uplink polled at 10 Mbps,
 *   95 % utilisation in 10 of 48 buckets. Rooms B1 (projector online Thu only, used both periods, a fault in 4
 *   of its 16 buckets) and B2 (no display). The third class has no room registered: unmonitored.
 * - C 3301080001 urban junior in 滨江区 330108, 1 class, 40 students, 3 teachers. Room C1 (panel fully used).
 *   Uplink: no readings in the 8 buckets of Thursday's second period, oper down in 2 more: up 38 of 48.
 */
export const CITY: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
    { id: '330108', name: '滨江区', level: 'county', parent: '330100' },
  ],
  schools: [
    {
      id: 'A',
      name: '西湖区第一小学',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 2,
      students: 90,
      teachers: 6,
      uplinkDevice: 'gw-a',
      uplinkInterface: 1,
      contractedMbps: 100,
    },
    {
      id: 'B',
      name: '转塘教学点',
      region: '330106',
      area: 'rural',
      level: 'teaching_point',
      classes: 3,
      students: 45,
      teachers: 5,
      uplinkDevice: 'gw-b',
      uplinkInterface: 1,
    },
    {
      id: 'C',
      name: '滨江区实验初中',
      region: '330108',
      area: 'urban',
      level: 'junior',
      classes: 1,
      students: 40,
      teachers: 3,
      uplinkDevice: 'gw-c',
      uplinkInterface: 1,
    },
  ],
  classrooms: [
    { id: 'A1', school: 'A', name: '一(1)班', isClass: true },
    { id: 'A2', school: 'A', name: '一(2)班', isClass: true },
    { id: 'A-lab', school: 'A', name: '科学实验室', isClass: false },
    { id: 'B1', school: 'B', name: '复式班一', isClass: true },
    { id: 'B2', school: 'B', name: '复式班二', isClass: true },
    { id: 'C1', school: 'C', name: '七(1)班', isClass: true },
  ],
  devices: [
    { id: 'gw-a', school: 'A', kind: 'router' },
    { id: 'gw-b', school: 'B', kind: 'router' },
    { id: 'gw-c', school: 'C', kind: 'router' },
    {
      id: 'pn-a1',
      school: 'A',
      classroom: 'A1',
      kind: 'panel',
      batch: '2023-西湖-02',
      purchasedOn: '2023-08-15',
    },
    { id: 'pc-a1', school: 'A', classroom: 'A1', kind: 'teacher_pc' },
    { id: 'pn-a2', school: 'A', classroom: 'A2', kind: 'panel', batch: '2023-西湖-02' },
    { id: 'pj-b1', school: 'B', classroom: 'B1', kind: 'projector', batch: '2019-西湖-01' },
    { id: 'pn-c1', school: 'C', classroom: 'C1', kind: 'panel', batch: '2022-滨江-01' },
  ],
};

const twoPeriods = ['08:00-08:40', '08:50-09:30'];
/** A calendar with class all day, every day (alerting tests: every moment is teaching time). */
export const ALL_DAY: CalendarDef = {
  id: 'all-day',
  regions: ['330000'],
  terms: [{ name: 'test', start: '2026-01-01', end: '2027-12-31' }],
  periods: Object.fromEntries(
    ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'].map((d) => [d, ['00:00-23:59']]),
  ),
};

export const CITY_CALENDAR: CalendarDef = {
  id: 'hz-test',
  regions: ['330000'],
  terms: [{ name: '2026—2027 学年第一学期', start: '2026-09-01', end: '2027-01-22' }],
  holidays: [
    { name: '中秋节', start: '2026-09-25', end: '2026-09-25' },
    { name: '国庆节', start: '2026-10-01', end: '2026-10-07' },
  ],
  makeUpDays: [{ date: '2026-10-10', as: 'thu' }],
  periods: { mon: twoPeriods, tue: twoPeriods, wed: twoPeriods, thu: twoPeriods, fri: twoPeriods },
};

export const TEACHING_DAYS = ['2026-10-08', '2026-10-09', '2026-10-10'] as const;
const BUCKET_MS = 300_000;

/** The 16 buckets of a teaching day: [period 0 or 1, index within the period 0..7, bucket start ms]. */
function buckets(date: string): [number, number, number][] {
  const midnight = localMidnightMs(date);
  const starts = [8 * 60, 8 * 60 + 50].map((m) => midnight + m * 60_000);
  return starts.flatMap((s, p) =>
    Array.from({ length: 8 }, (_, i) => [p, i, s + i * BUCKET_MS] as [number, number, number]),
  );
}

/** The raw readings behind the hand-worked figures, one per 5-minute bucket (in its middle). */
export function cityPoints(): AnyPoint[] {
  const pts: AnyPoint[] = [];
  const display = (device: string, school: string, ts: number, on: number, inUse: number, errors = 0) =>
    pts.push({
      measurement: 'display',
      tags: { school, device, kind: 'panel' },
      fields: { on, in_use: inUse, error_count: errors, power: on ? 'on' : 'standby' },
      ts,
    });
  const uplink = (school: string, ts: number, util: number, up: number, speed: number) =>
    pts.push({
      measurement: 'iface',
      tags: {
        school,
        device: `gw-${school.toLowerCase()}`,
        kind: 'router',
        ifname: 'Gi0/0/1',
        uplink: 'true',
      },
      fields: { util_in_pct: util, util_out_pct: util / 3, oper_up: up, speed_mbps: speed },
      ts,
    });
  let aBusy = 0;
  let bBusy = 0;
  TEACHING_DAYS.forEach((date, day) => {
    for (const [period, i, start] of buckets(date)) {
      const ts = start + BUCKET_MS / 2;
      display('pn-a1', 'A', ts, 1, 1);
      display('pn-a2', 'A', ts, 1, period === 0 && i < 4 ? 1 : 0);
      display('pn-c1', 'C', ts, 1, 1);
      if (day === 0) display('pj-b1', 'B', ts, 1, 1, i < 2 ? 1 : 0); // 2 faulty buckets per period: 4 of 16
      if (day < 2)
        pts.push({
          measurement: 'host',
          tags: { school: 'A', device: 'pc-a1', kind: 'teacher_pc' },
          fields: { cpu_pct: 12 },
          ts,
        });
      uplink('A', ts, aBusy++ < 2 ? 85 : 30, 1, 1000);
      uplink('B', ts, bBusy++ < 10 ? 95 : 20, 1, 10);
      const cMissing = day === 0 && period === 1;
      const cDown = day === 1 && period === 0 && i < 2;
      if (!cMissing) uplink('C', ts, 10, cDown ? 0 : 1, 1000);
    }
  });
  // Outside teaching time nothing counts as use, and the display left on counts as left on: after the last
  // period, an evening, a holiday and a vacation day (pn-a2: 3 buckets in week 41, 1 in the vacation). The break
  // between the periods is neither teaching time nor outside it.
  for (const ts of [
    Date.parse('2026-10-08T08:45:00+08:00'), // the break between the periods
    Date.parse('2026-10-08T09:40:00+08:00'), // after the last period
    Date.parse('2026-10-08T20:00:00+08:00'),
    Date.parse('2026-10-06T08:10:00+08:00'), // 国庆节
    Date.parse('2027-02-02T08:10:00+08:00'), // 寒假
  ]) {
    display('pn-a2', 'A', ts, 1, 1);
    uplink('A', ts, 99, 0, 1000);
  }
  return pts;
}

export async function writeCity(storage: Storage): Promise<void> {
  storage.write(cityPoints());
  await storage.flush();
}

/** The rollup job over the fixture city, with its 5-minute buckets. */
export function cityRollup(storage: Storage, registry: () => RegistryIndex, calendars: Calendars): Rollup {
  return new Rollup({ storage, registry, calendars: () => calendars, log: silentLogger(), bucketS: 300 });
}
