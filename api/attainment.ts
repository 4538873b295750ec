import { type Calendars, dateOf, dayNumber, localMidnightMs } from '../common/calendar.js';
import type { RegistryIndex } from '../common/registry/store.js';
import { iql, type Storage, timeMs } from '../common/storage/index.js';
import { regionWithin } from '../contracts/ids.js';
import { type Classroom, DISPLAY_KINDS, type School } from '../contracts/registry.js';
import type { Profile } from './profiles.js';

/**
 * 校校通 / 班班通 attainment and the usage audit for a period (design: api/README.md#computations). Two steps:
 * `loadPeriod` sums the period's rollups per device and per school with one InfluxQL request (the expensive,
 * cacheable part); `evaluate` joins them with the registry and calendars under a profile (cheap, pure).
 */

export interface Period {
  /** Inclusive local dates. */
  from: string;
  to: string;
}

export interface UsageSums {
  teachingB: number;
  onlineB: number;
  onB: number;
  useB: number;
  faultyB: number;
  periods: number;
  periodsUsed: number;
  onlineDays: number;
  usedDays: number;
  bucketS: number;
}

export interface UplinkSums {
  teachingB: number;
  dataB: number;
  upB: number;
  /** Buckets at or above 50, 60, 70, 80, 90 % utilisation. */
  over: Record<50 | 60 | 70 | 80 | 90, number>;
  p95MaxPct: number | null;
  speedMbps: number | null;
  bucketS: number;
}

export interface PeriodData {
  period: Period;
  usage: Map<string, UsageSums>;
  uplink: Map<string, UplinkSums>;
  /** Local date a device was last used (within `lookbackDays` before the period's end). */
  lastUsed: Map<string, string>;
  /** Dates in the period that have been rolled up. */
  rolledDates: string[];
  lookbackFrom: string;
}

/** How far back "last used" looks for the idle list. */
export const LOOKBACK_DAYS = 180;

export async function loadPeriod(storage: Storage, period: Period): Promise<PeriodData> {
  const a = timeMs(localMidnightMs(period.from));
  const b = timeMs(localMidnightMs(period.to) + 86_400_000);
  const lookbackFrom = dateOf(dayNumber(period.to) - LOOKBACK_DAYS);
  const c = timeMs(localMidnightMs(lookbackFrom));
  const [usage = [], uplink = [], last = [], rolled = []] = await storage.query(
    [
      iql`SELECT sum(teaching_b) AS teaching_b, sum(online_b) AS online_b, sum(on_b) AS on_b, sum(use_b) AS use_b, sum(faulty_b) AS faulty_b, sum(periods) AS periods, sum(periods_used) AS periods_used, sum(online_day) AS online_days, sum(used_day) AS used_days, last(bucket_s) AS bucket_s FROM usage_day WHERE time >= ${a} AND time < ${b} GROUP BY device`,
      iql`SELECT sum(teaching_b) AS teaching_b, sum(data_b) AS data_b, sum(up_b) AS up_b, sum(over50_b) AS o50, sum(over60_b) AS o60, sum(over70_b) AS o70, sum(over80_b) AS o80, sum(over90_b) AS o90, max(p95_util_pct) AS p95, max(speed_mbps) AS speed, last(bucket_s) AS bucket_s FROM uplink_day WHERE time >= ${a} AND time < ${b} GROUP BY school`,
      iql`SELECT last(used_day) AS u FROM usage_day WHERE used_day = 1 AND time >= ${c} AND time < ${b} GROUP BY device`,
      iql`SELECT devices FROM rollup_day WHERE time >= ${a} AND time < ${b}`,
    ].join('; '),
  );
  const data: PeriodData = {
    period,
    usage: new Map(),
    uplink: new Map(),
    lastUsed: new Map(),
    rolledDates: [],
    lookbackFrom,
  };
  for (const s of usage) {
    const r = row(s.columns, s.values[0] ?? []);
    data.usage.set(s.tags.device!, {
      teachingB: n(r.teaching_b),
      onlineB: n(r.online_b),
      onB: n(r.on_b),
      useB: n(r.use_b),
      faultyB: n(r.faulty_b),
      periods: n(r.periods),
      periodsUsed: n(r.periods_used),
      onlineDays: n(r.online_days),
      usedDays: n(r.used_days),
      bucketS: n(r.bucket_s),
    });
  }
  for (const s of uplink) {
    const r = row(s.columns, s.values[0] ?? []);
    data.uplink.set(s.tags.school!, {
      teachingB: n(r.teaching_b),
      dataB: n(r.data_b),
      upB: n(r.up_b),
      over: { 50: n(r.o50), 60: n(r.o60), 70: n(r.o70), 80: n(r.o80), 90: n(r.o90) },
      p95MaxPct: typeof r.p95 === 'number' ? r.p95 : null,
      speedMbps: typeof r.speed === 'number' ? r.speed : null,
      bucketS: n(r.bucket_s),
    });
  }
  for (const s of last) {
    const t = s.values[0]?.[0];
    if (typeof t === 'number') data.lastUsed.set(s.tags.device!, localDateOfMidnight(t));
  }
  for (const s of rolled)
    for (const v of s.values) data.rolledDates.push(localDateOfMidnight(v[0] as number));
  return data;
}

const localDateOfMidnight = (ms: number) => dateOf(Math.round((ms + 8 * 3_600_000) / 86_400_000));
const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
function row(columns: string[], values: unknown[]): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  columns.forEach((c, i) => {
    r[c] = values[i];
  });
  return r;
}

// ---- evaluation ----------------------------------------------------------------------------------------------

export interface Reason {
  /** Stable code (documented in api/README.md). */
  code:
    | 'no_calendar'
    | 'no_teaching_time'
    | 'uplink_not_monitored'
    | 'uplink_availability_low'
    | 'uplink_capacity_low'
    | 'per_class_bandwidth_low'
    | 'uplink_congested'
    | 'not_equipped'
    | 'offline_too_often'
    | 'unhealthy'
    | 'used_too_little'
    | 'school_not_connected';
  message: string;
}

export interface SchoolResult {
  id: string;
  name: string;
  region: string;
  area: School['area'];
  level: School['level'];
  classes: number;
  students: number;
  teachers: number;
  teachingDays: number;
  uplink: {
    monitored: boolean;
    availabilityPct: number | null;
    capacityMbps: number | null;
    capacitySource: 'contract' | 'polled' | null;
    perClassMbps: number | null;
    /** Share of teaching-time buckets at or above the profile's congestion threshold. */
    busyPct: number | null;
    congested: boolean;
    p95MaxDayPct: number | null;
  };
  /** null: no teaching time in the period (vacation), so nothing to judge. */
  xxt: { attained: boolean | null; reasons: Reason[] };
  bbt: {
    /** Classes counted: the larger of the school's class count and its registered class rooms. */
    classes: number;
    attained: number;
    /** Classes without a registered class room (no monitored equipment): not attained. */
    unmonitored: number;
  };
  computers: { teacherWorking: number; studentWorking: number };
}

export interface ClassroomResult {
  id: string;
  school: string;
  name: string;
  attained: boolean | null;
  reasons: Reason[];
  equipped: boolean;
  onlineDays: number;
  teachingDays: number;
  periodsUsedPerWeek: number;
  faultyPct: number | null;
}

export interface DeviceAudit {
  id: string;
  school: string;
  classroom: string | null;
  kind: string;
  batch: string | null;
  purchasedOn: string | null;
  poweredOnHours: number;
  inUseHours: number;
  daysUsed: number;
  teachingDays: number;
  usedDaysPct: number | null;
  lastUsed: string | null;
  /** Teaching days since it was last used (since the look-back start when never used). */
  idleTeachingDays: number;
  idle: boolean;
}

export interface Evaluation {
  period: Period;
  profile: string;
  /** Rolled-up dates in the period ÷ dates in the period that some school teaches on. */
  coverage: { rolledDays: number; teachingDates: number };
  schools: SchoolResult[];
  classrooms: ClassroomResult[];
  devices: DeviceAudit[];
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;
const pct = (a: number, b: number) => (b > 0 ? round((100 * a) / b, 2) : null);

/** Evaluates every school of the registry (scope filtering happens on the result). */
export function evaluate(
  data: PeriodData,
  reg: RegistryIndex,
  cals: Calendars,
  profile: Profile,
  opts: { idleDays?: number } = {},
): Evaluation {
  const { from, to } = data.period;
  const idleDays = opts.idleDays ?? profile.idleDays;
  const schools: SchoolResult[] = [];
  const classrooms: ClassroomResult[] = [];
  const devices: DeviceAudit[] = [];
  const teachingDates = new Set<string>();

  for (const s of reg.data.schools) {
    const path = reg.regionPath(s.region);
    const cal = cals.forSchool(s.id, path);
    const days = cal ? cal.teachingDays(from, to) : [];
    for (const d of days) teachingDates.add(d.date);
    const teachingDays = days.length;
    const weeks = cal && cal.daysPerWeek > 0 ? teachingDays / cal.daysPerWeek : 0;

    // 校校通
    const up = data.uplink.get(s.id);
    const reasons: Reason[] = [];
    if (!cal) reasons.push({ code: 'no_calendar', message: 'no school calendar covers this school' });
    const monitored = up !== undefined && up.dataB > 0;
    const availabilityPct = up ? pct(up.upB, up.teachingB) : null;
    const capacityMbps = s.contractedMbps ?? up?.speedMbps ?? null;
    const capacitySource = s.contractedMbps ? 'contract' : up?.speedMbps ? 'polled' : null;
    const perClassMbps = capacityMbps !== null && s.classes > 0 ? round(capacityMbps / s.classes, 2) : null;
    const busyPct = up && up.dataB > 0 ? pct(up.over[profile.congestionPct], up.dataB) : null;
    // "95th percentile ≥ threshold" ⟺ at least 5 % of the samples are at or above it.
    const congested = busyPct !== null && busyPct >= 5;
    const perClassMin = profile.perClassMbps[s.area];
    if (!monitored)
      reasons.push({ code: 'uplink_not_monitored', message: 'no uplink readings in teaching time' });
    else if (availabilityPct !== null && availabilityPct < profile.minUplinkAvailabilityPct)
      reasons.push({
        code: 'uplink_availability_low',
        message: `uplink up ${availabilityPct} % of teaching time, below ${profile.minUplinkAvailabilityPct} %`,
      });
    if (capacityMbps !== null && capacityMbps < profile.minUplinkMbps)
      reasons.push({
        code: 'uplink_capacity_low',
        message: `uplink ${capacityMbps} Mbps, below ${profile.minUplinkMbps} Mbps`,
      });
    if (perClassMbps !== null && perClassMbps < perClassMin)
      reasons.push({
        code: 'per_class_bandwidth_low',
        message: `${perClassMbps} Mbps per class (${capacityMbps} Mbps ÷ ${s.classes} classes), below ${perClassMin} Mbps for ${s.area} schools`,
      });
    if (congested)
      reasons.push({
        code: 'uplink_congested',
        message: `95th-percentile utilisation at or above ${profile.congestionPct} % (${busyPct} % of teaching time)`,
      });
    const applicable = teachingDays > 0;
    if (!applicable) {
      reasons.length = 0;
      reasons.push({
        code: 'no_teaching_time',
        message: 'no teaching day in this period (vacation or holidays)',
      });
    }
    const xxtAttained = applicable ? reasons.length === 0 : null;

    // 班班通 and the audit
    const rooms = (reg.classroomsBySchool.get(s.id) ?? []).filter((c) => c.isClass);
    let attained = 0;
    for (const room of rooms) {
      const r = evaluateClassroom(room, reg, data, profile, teachingDays, weeks, xxtAttained);
      if (r.attained === true) attained++;
      classrooms.push(r);
    }
    let teacherWorking = 0;
    let studentWorking = 0;
    for (const d of reg.devicesBySchool.get(s.id) ?? []) {
      const u = data.usage.get(d.id);
      if (d.kind === 'teacher_pc' && (u?.onlineDays ?? 0) > 0) teacherWorking++;
      if (d.kind === 'student_pc' && (u?.onlineDays ?? 0) > 0) studentWorking++;
      if (d.kind === 'router' || d.kind === 'switch' || d.kind === 'ap') continue;
      const hours = (b: number) => round((b * (u?.bucketS ?? 0)) / 3600, 2);
      const lastUsed = data.lastUsed.get(d.id) ?? null;
      const idleSince = lastUsed ? dateOf(dayNumber(lastUsed) + 1) : data.lookbackFrom;
      const idleTeachingDays = cal && idleSince <= to ? cal.teachingDays(idleSince, to).length : 0;
      devices.push({
        id: d.id,
        school: s.id,
        classroom: d.classroom ?? null,
        kind: d.kind,
        batch: d.batch ?? null,
        purchasedOn: d.purchasedOn ?? null,
        poweredOnHours: hours(u?.onB ?? 0),
        inUseHours: hours(u?.useB ?? 0),
        daysUsed: u?.usedDays ?? 0,
        teachingDays,
        usedDaysPct: pct(u?.usedDays ?? 0, teachingDays),
        lastUsed,
        idleTeachingDays,
        idle: idleTeachingDays >= idleDays,
      });
    }
    const counted = Math.max(s.classes, rooms.length);
    schools.push({
      id: s.id,
      name: s.name,
      region: path,
      area: s.area,
      level: s.level,
      classes: s.classes,
      students: s.students,
      teachers: s.teachers,
      teachingDays,
      uplink: {
        monitored,
        availabilityPct,
        capacityMbps,
        capacitySource,
        perClassMbps,
        busyPct,
        congested,
        p95MaxDayPct: up?.p95MaxPct ?? null,
      },
      xxt: { attained: xxtAttained, reasons },
      bbt: { classes: counted, attained, unmonitored: counted - rooms.length },
      computers: { teacherWorking, studentWorking },
    });
  }
  const rolledDays = data.rolledDates.filter((d) => teachingDates.has(d)).length;
  return {
    period: data.period,
    profile: profile.id,
    coverage: { rolledDays, teachingDates: teachingDates.size },
    schools,
    classrooms,
    devices,
  };
}

function evaluateClassroom(
  room: Classroom,
  reg: RegistryIndex,
  data: PeriodData,
  profile: Profile,
  teachingDays: number,
  weeks: number,
  schoolConnected: boolean | null,
): ClassroomResult {
  const devs = reg.devicesByClassroom.get(room.id) ?? [];
  const displays = devs.filter((d) => (DISPLAY_KINDS as readonly string[]).includes(d.kind));
  const reasons: Reason[] = [];
  // A classroom's figures are its best display's (two displays do not double its use).
  let onlineDays = 0;
  let periodsUsed = 0;
  let onlineB = 0;
  let faultyB = 0;
  for (const d of displays) {
    const u = data.usage.get(d.id);
    if (!u) continue;
    onlineDays = Math.max(onlineDays, u.onlineDays);
    periodsUsed = Math.max(periodsUsed, u.periodsUsed);
    if (u.onlineB > onlineB) {
      onlineB = u.onlineB;
      faultyB = u.faultyB;
    }
  }
  const equipped = displays.length > 0;
  const periodsUsedPerWeek = weeks > 0 ? round(periodsUsed / weeks, 1) : 0;
  const faultyPct = pct(faultyB, onlineB);
  const onlinePct = pct(onlineDays, teachingDays) ?? 0;
  if (schoolConnected === null) {
    reasons.push({
      code: 'no_teaching_time',
      message: 'no teaching day in this period (vacation or holidays)',
    });
  } else if (!equipped) {
    reasons.push({ code: 'not_equipped', message: 'no teaching display registered in this classroom' });
  } else {
    if (onlinePct < profile.minOnlineDaysPct)
      reasons.push({
        code: 'offline_too_often',
        message: `online on ${onlineDays} of ${teachingDays} teaching days (${onlinePct} %), below ${profile.minOnlineDaysPct} %`,
      });
    if (faultyPct !== null && faultyPct > profile.maxFaultyPct)
      reasons.push({
        code: 'unhealthy',
        message: `faults reported in ${faultyPct} % of online teaching time, above ${profile.maxFaultyPct} %`,
      });
    if (periodsUsedPerWeek < profile.minUsePeriodsPerWeek)
      reasons.push({
        code: 'used_too_little',
        message: `used in ${periodsUsedPerWeek} class periods per teaching week, below ${profile.minUsePeriodsPerWeek}`,
      });
  }
  if (schoolConnected === false)
    reasons.push({ code: 'school_not_connected', message: "the school's uplink does not attain 校校通" });
  return {
    id: room.id,
    school: room.school,
    name: room.name,
    attained: schoolConnected === null ? null : reasons.length === 0,
    reasons,
    equipped,
    onlineDays,
    teachingDays,
    periodsUsedPerWeek,
    faultyPct,
  };
}

// ---- rollups -------------------------------------------------------------------------------------------------

export interface RollupRow {
  region: string;
  regionName: string;
  regionLevel: string;
  /** `all`, or one value of the split: `urban`/`rural`, or a school level. */
  split: 'all' | 'area' | 'level';
  group: string;
  /** Schools with teaching time in the period (the others are counted in `schoolsNotApplicable`). */
  schools: number;
  schoolsNotApplicable: number;
  schoolsAttained: number;
  xxtPct: number | null;
  classes: number;
  classesAttained: number;
  bbtPct: number | null;
  classesUnmonitored: number;
  students: number;
  teachers: number;
  studentComputers: number;
  teacherComputers: number;
  /** 生机比: students per working student computer; null without any. */
  studentsPerComputer: number | null;
  /** 师机比: teachers per working teacher computer. */
  teachersPerComputer: number | null;
}

/**
 * Rollups per region at or below `scope` (the scope's own region and every region under it), each as a total
 * and split by urban/rural and by school level. Only schools within the scope are counted.
 */
export function rollups(ev: Evaluation, reg: RegistryIndex, scope: string | undefined): RollupRow[] {
  const acc = new Map<string, RollupRow>();
  const add = (path: string, split: RollupRow['split'], group: string, s: SchoolResult) => {
    const key = `${path}|${split}|${group}`;
    let r = acc.get(key);
    if (!r) {
      const id = path.split('/').at(-1)!;
      const region = reg.regions.get(id);
      r = {
        region: path,
        regionName: region?.name ?? id,
        regionLevel: region?.level ?? 'region',
        split,
        group,
        schools: 0,
        schoolsNotApplicable: 0,
        schoolsAttained: 0,
        xxtPct: null,
        classes: 0,
        classesAttained: 0,
        bbtPct: null,
        classesUnmonitored: 0,
        students: 0,
        teachers: 0,
        studentComputers: 0,
        teacherComputers: 0,
        studentsPerComputer: null,
        teachersPerComputer: null,
      };
      acc.set(key, r);
    }
    if (s.xxt.attained === null) {
      r.schoolsNotApplicable++;
      return;
    }
    r.schools++;
    if (s.xxt.attained) r.schoolsAttained++;
    r.classes += s.bbt.classes;
    r.classesAttained += s.bbt.attained;
    r.classesUnmonitored += s.bbt.unmonitored;
    r.students += s.students;
    r.teachers += s.teachers;
    r.studentComputers += s.computers.studentWorking;
    r.teacherComputers += s.computers.teacherWorking;
  };
  for (const s of ev.schools) {
    if (scope !== undefined && !regionWithin(s.region, scope)) continue;
    const parts = s.region.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const path = parts.slice(0, i).join('/');
      if (scope !== undefined && !regionWithin(path, scope)) continue; // above the scope: not shown
      add(path, 'all', 'all', s);
      add(path, 'area', s.area, s);
      add(path, 'level', s.level, s);
    }
  }
  const rows = [...acc.values()];
  for (const r of rows) {
    r.xxtPct = pct(r.schoolsAttained, r.schools);
    r.bbtPct = pct(r.classesAttained, r.classes);
    r.studentsPerComputer = r.studentComputers > 0 ? round(r.students / r.studentComputers, 2) : null;
    r.teachersPerComputer = r.teacherComputers > 0 ? round(r.teachers / r.teacherComputers, 2) : null;
  }
  return rows.sort((a, b) =>
    a.region === b.region ? (a.split + a.group < b.split + b.group ? -1 : 1) : a.region < b.region ? -1 : 1,
  );
}
