import { SimulatedActivity } from '../agents/sources/activity/simulated.js';
import { DEFAULT_TEACHING_SITES } from '../agents/sources/activity/sites.js';
import { SimulatedDisplay, type SimulatedDisplayOptions } from '../agents/sources/simulated.js';
import { ifacePoints, telemetryPoints } from '../collector/points.js';
import { Calendar, type CalendarDef, dateOf, dayNumber, localDate, WEEKDAYS } from '../common/calendar.js';
import { fnv1a } from '../common/hash.js';
import type { AnyPoint } from '../contracts/influx.js';
import type { Registry } from '../contracts/registry.js';

/**
 * A simulated city for the quickstart (design: docs/quickstart.md): three counties, urban and rural schools,
 * each with a router (its uplink) and a whiteboard per classroom, a school calendar, and a deterministic model
 * of a school day: uplink traffic that follows class time, displays used in most periods. Some schools are
 * special, so the reports have something to find: one loses its uplink, one rural school's thin uplink is
 * congested all day, some whiteboards are never switched on (idle: bought but unused), one has a lamp fault.
 *
 * The same model feeds the live simulation (routers, agents) and the history written for the past school days,
 * so what the reports compute from the history is what the live city shows.
 */

export type Scenario = 'normal' | 'outage' | 'congested';

export interface SimRoom {
  id: string;
  name: string;
  device: string;
  idle: boolean;
  faulty: boolean;
}

export interface SimSchool {
  id: string;
  name: string;
  county: { id: string; name: string };
  area: 'urban' | 'rural';
  level: 'primary' | 'junior';
  uplinkMbps: number;
  scenario: Scenario;
  router: string;
  rooms: SimRoom[];
  /** Student computers in the lab (simulated in the history only: the lab is closed today). */
  labPcs: string[];
}

export interface CityPlan {
  registry: Registry;
  calendar: CalendarDef;
  schools: SimSchool[];
}

const CITY = { id: '330100', name: '杭州市' };
const PROVINCE = { id: '330000', name: '浙江省' };
const COUNTIES = [
  { id: '330106', name: '西湖区', rural: 0, towns: ['文新', '翠苑', '古荡', '留下', '转塘', '蒋村'] },
  {
    id: '330110',
    name: '余杭区',
    rural: 0.5,
    towns: ['仁和', '良渚', '瓶窑', '径山', '黄湖', '鸬鸟', '百丈'],
  },
  {
    id: '330127',
    name: '淳安县',
    rural: 1,
    towns: ['汾口', '威坪', '姜家', '梓桐', '中洲', '枫树岭', '大墅'],
  },
] as const;

/** The simulation is deterministic for a given name. */
const hash = fnv1a;
const unit = (s: string) => (hash(s) % 10_000) / 10_000;

/** Class periods (CST) of a school day in the simulated city. */
export const CITY_PERIODS = [
  '08:00-08:40',
  '08:50-09:30',
  '09:50-10:30',
  '10:40-11:20',
  '14:00-14:40',
  '14:50-15:30',
  '15:40-16:20',
];

/** `--class-all-day`: sixteen periods of 90 minutes from midnight to midnight, every day of the week. */
export const ALL_DAY_PERIODS = Array.from({ length: 16 }, (_, i) => {
  const hhmm = (min: number) =>
    `${String(Math.floor(min / 60)).padStart(2, '0')}:${String(min % 60).padStart(2, '0')}`;
  return `${hhmm(i * 90)}-${hhmm((i + 1) * 90)}`;
});

const DIGITS = '零一二三四五六七八九';

/** 1 … 999 in Chinese numerals, as in 第二小学, 第十二小学, 第一百零五小学. */
export function chineseNumeral(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 999) throw new RangeError(`chineseNumeral: ${n} is not 1..999`);
  if (n < 10) return DIGITS[n]!;
  if (n < 100) return `${n < 20 ? '' : DIGITS[Math.floor(n / 10)]}十${n % 10 ? DIGITS[n % 10] : ''}`;
  const rest = n % 100;
  const tail =
    rest === 0 ? '' : rest < 10 ? `零${DIGITS[rest]}` : `${rest < 20 ? '一' : ''}${chineseNumeral(rest)}`;
  return `${DIGITS[Math.floor(n / 100)]}百${tail}`;
}

/**
 * A school's name: county, town and kind, as Chinese schools are named. The first rural school of a kind in a town
 * is its 中心小学 / 初级中学, the next ones 第二小学, 第三初级中学…; an urban school's further campuses are 2 校区,
 * 3 校区…. `seen` counts the schools of each kind per town so far, so every name is unique and the same for the
 * same plan.
 */
function schoolName(
  county: { name: string },
  town: string,
  rural: boolean,
  level: 'primary' | 'junior',
  seen: Map<string, number>,
): string {
  const key = `${county.name}${town}/${rural ? 'rural' : 'urban'}/${level}`;
  const n = (seen.get(key) ?? 0) + 1;
  seen.set(key, n);
  if (rural)
    return `${county.name}${town}${n === 1 ? (level === 'junior' ? '初级中学' : '中心小学') : `第${chineseNumeral(n)}${level === 'junior' ? '初级中学' : '小学'}`}`;
  return `${county.name}${town}${level === 'junior' ? '中学' : '小学'}${n === 1 ? '' : ` ${n} 校区`}`;
}

export function planCity(opts: {
  schools: number;
  classrooms: number;
  today?: string;
  /** Class around the clock every day (ALL_DAY_PERIODS), so that class-time alerts can be tried at any hour. */
  classAllDay?: boolean;
}): CityPlan {
  const schools: SimSchool[] = [];
  const seen = new Map<string, number>();
  const n = Math.max(3, opts.schools);
  for (let i = 0; i < n; i++) {
    const county = COUNTIES[i % 3]!;
    const k = Math.floor(i / 3); // the k-th school of its county
    const id = `${county.id}${String(k + 1).padStart(4, '0')}`;
    const rural = unit(`${id}:rural`) < county.rural;
    const level = k % 3 === 2 ? 'junior' : 'primary';
    const town = county.towns[k % county.towns.length]!;
    const name = schoolName(county, town, rural, level, seen);
    // The special schools: the second school of 余杭区 loses its uplink; the first rural school of 淳安县 has a
    // 50 Mbit/s uplink that is full all day.
    const scenario: Scenario =
      county.id === '330110' && k === 1
        ? 'outage'
        : county.id === '330127' && k === 0
          ? 'congested'
          : 'normal';
    const classrooms = Math.max(2, opts.classrooms - (rural ? 1 : 0) + (hash(id) % 3) - 1);
    const rooms: SimRoom[] = Array.from({ length: classrooms }, (_, r) => {
      const room = `${id}-c${String(r + 1).padStart(2, '0')}`;
      return {
        id: room,
        name: `${Math.floor(r / 2) + 1} 年级 (${(r % 2) + 1}) 班`,
        device: `wb-${room}`,
        // About one in eight whiteboards never switched on; in one urban school, half of them.
        idle: unit(`${room}:idle`) < (county.id === '330106' && k === 1 ? 0.5 : 0.12),
        faulty: i === 4 && r === 0,
      };
    });
    schools.push({
      id,
      name,
      county: { id: county.id, name: county.name },
      area: rural ? 'rural' : 'urban',
      level,
      uplinkMbps: scenario === 'congested' ? 50 : rural ? 100 : 1000,
      scenario,
      router: `gw-${id}`,
      rooms,
      labPcs: Array.from({ length: rural ? 8 : 16 }, (_, p) => `pc-${id}-${String(p + 1).padStart(2, '0')}`),
    });
  }

  const registry: Registry = {
    regions: [
      { id: PROVINCE.id, name: PROVINCE.name, level: 'province' },
      { id: CITY.id, name: CITY.name, level: 'city', parent: PROVINCE.id },
      ...COUNTIES.map((c) => ({ id: c.id, name: c.name, level: 'county' as const, parent: CITY.id })),
    ],
    schools: schools.map((s) => ({
      id: s.id,
      name: s.name,
      region: s.county.id,
      area: s.area,
      level: s.level,
      classes: s.rooms.length + (s.area === 'rural' ? 1 : 0), // a rural class without monitored equipment
      students: s.rooms.length * (s.area === 'rural' ? 38 : 45),
      teachers: s.rooms.length * 3,
      uplinkDevice: s.router,
      uplinkInterface: 1,
      contractedMbps: s.uplinkMbps,
    })),
    classrooms: schools.flatMap((s) => [
      ...s.rooms.map((r) => ({ id: r.id, school: s.id, name: r.name, isClass: true })),
      { id: `${s.id}-lab`, school: s.id, name: '计算机教室', isClass: false },
    ]),
    devices: schools.flatMap((s) => [
      { id: s.router, school: s.id, kind: 'router' as const, vendor: 'H3C', model: 'MSR2600' },
      ...s.rooms.map((r) => ({
        id: r.device,
        school: s.id,
        classroom: r.id,
        kind: 'whiteboard' as const,
        batch: s.area === 'rural' ? '2023-薄改-02' : '2024-班班通-01',
      })),
      ...s.labPcs.map((pc) => ({
        id: pc,
        school: s.id,
        classroom: `${s.id}-lab`,
        kind: 'student_pc' as const,
      })),
    ]),
  };

  // Terms around today, so the city is always in term: weekdays are school days with seven class periods.
  const today = opts.today ?? localDate(Date.now());
  const calendar: CalendarDef = {
    id: 'sim-city',
    name: '模拟城市校历',
    regions: [PROVINCE.id],
    terms: [{ name: '模拟学期', start: dateOf(dayNumber(today) - 60), end: dateOf(dayNumber(today) + 60) }],
    periods: opts.classAllDay
      ? Object.fromEntries(WEEKDAYS.map((d) => [d, ALL_DAY_PERIODS]))
      : Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, CITY_PERIODS])),
    source: 'generated by the quickstart (dev/city.ts)',
  };
  return { registry, calendar, schools };
}

/** Share (0..1) of the school's uplink in use at `ms`: busy in class time, quiet at night; the congested school is full. */
export function uplinkLoad(s: SimSchool, ms: number, inClass: boolean): number {
  const slot = Math.floor(ms / 60_000);
  const noise = unit(`${s.id}:${slot}`);
  if (s.scenario === 'congested') return inClass ? 0.92 + 0.07 * noise : 0.4 + 0.2 * noise;
  if (!inClass) return 0.02 + 0.05 * noise;
  return (s.area === 'urban' ? 0.15 : 0.3) + 0.35 * noise;
}

/**
 * How a classroom's whiteboard is simulated (agents/sources/simulated.ts), live and in the history alike: switched
 * on for 80 % of the slots, with nobody at the board in one in five of those (on but unused).
 */
export const ROOM_SIMULATION = { useShare: 0.8, unattendedShare: 0.2 } as const;

function roomOptions(s: SimSchool, r: SimRoom): SimulatedDisplayOptions {
  return { seed: `${s.id}/${r.device}`, idle: r.idle, faulty: r.faulty, ...ROOM_SIMULATION };
}

/** The simulated display of a classroom (the same one its live agent uses). */
export function roomDisplay(s: SimSchool, r: SimRoom): SimulatedDisplay {
  return new SimulatedDisplay(roomOptions(s, r));
}

/** The person at a classroom's whiteboard (the same one its live agent's `activity: simulated` reads). */
export function roomActivity(s: SimSchool, r: SimRoom): SimulatedActivity {
  return new SimulatedActivity({ ...roomOptions(s, r), teachingSite: DEFAULT_TEACHING_SITES[0]!.name });
}

/**
 * The city's past: for each teaching day in [from, to] and each class period that has ended by `nowMs`, one
 * reading per `stepS` from every whiteboard (telemetry), router (uplink) and lab PC (host), as the collector
 * would have stored them with its default rule of use (docs/usage.md). (The outage happens live, not in the
 * history.) The whiteboards speak telemetry v2 with the activity their live agents read (roomActivity): a
 * display switched on is touched — a lesson in 希沃白板, PowerPoint, WPS 演示 or the national platform — except
 * in about one slot in five, when it runs with nobody at it (on but unused, what the audit must find).
 */
export function historyPoints(
  plan: CityPlan,
  from: string,
  to: string,
  nowMs: number,
  stepS = 300,
): AnyPoint[] {
  const cal = new Calendar(plan.calendar);
  const displays = new Map(plan.schools.flatMap((s) => s.rooms.map((r) => [r.device, roomDisplay(s, r)])));
  const activities = new Map(plan.schools.flatMap((s) => s.rooms.map((r) => [r.device, roomActivity(s, r)])));
  const out: AnyPoint[] = [];
  for (let d = dayNumber(from); d <= dayNumber(to); d++) {
    const info = cal.day(dateOf(d));
    for (const p of info.periods) {
      for (let t = p.startMs; t < p.endMs && t <= nowMs; t += stepS * 1000) {
        for (const s of plan.schools) {
          const region = `${PROVINCE.id}/${CITY.id}/${s.county.id}`;
          for (const r of s.rooms) {
            const display = displays.get(r.device)!.read(new Date(t));
            out.push(
              ...telemetryPoints(
                s.id,
                r.device,
                {
                  v: 2,
                  ts: t,
                  seq: 0,
                  kind: 'whiteboard',
                  classroom: r.id,
                  display,
                  activity: activities.get(r.device)!.readSync(t),
                },
                { kind: 'whiteboard', classroom: r.id, region },
              ),
            );
          }
          // The lab is used in about half of the periods; each PC reports while it is on.
          if (unit(`${s.id}:${p.startMs}:lab`) < 0.5)
            for (const pc of s.labPcs)
              out.push(
                ...telemetryPoints(
                  s.id,
                  pc,
                  {
                    v: 1,
                    ts: t,
                    seq: 0,
                    kind: 'student_pc',
                    host: { uptimeS: 3_600, cpuPct: 20, memUsedPct: 40, memTotalBytes: 8e9, nics: [] },
                  },
                  { kind: 'student_pc', classroom: `${s.id}-lab`, region },
                ),
              );
          const load = uplinkLoad(s, t, true);
          const bps = load * s.uplinkMbps * 1e6;
          out.push(
            ...ifacePoints(
              s.id,
              s.router,
              {
                v: 1,
                ts: t,
                seq: 0,
                kind: 'router',
                sysUpTimeTicks: 0,
                ifaces: [
                  {
                    index: 1,
                    name: 'GigabitEthernet0/0/0',
                    alias: '上联 教育城域网',
                    uplink: true,
                    speedMbps: s.uplinkMbps,
                    operStatus: 'up',
                    counterBits: 64,
                    inOctets: '0',
                    outOctets: '0',
                    inBps: bps,
                    outBps: bps / 4,
                  },
                ],
              },
              { kind: 'router', region },
            ),
          );
        }
      }
    }
  }
  return out;
}
