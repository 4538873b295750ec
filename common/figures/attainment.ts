import { regionWithin } from '../../contracts/ids.js';
import type { PointOf } from '../../contracts/influx.js';
import { type Classroom, DISPLAY_KINDS, type School } from '../../contracts/registry.js';
import { type Calendar, type Calendars, dateOf, dayNumber, localDate } from '../calendar.js';
import { entityKey } from '../registry/key.js';
import type { RegistryIndex } from '../registry/store.js';
import { DayCache, periodBuckets } from './days.js';
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
  onlineB: number;
  onB: number;
  useB: number;
  faultyB: number;
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
}

export interface PeriodData {
  period: Period;
  /** By `entityKey(school, device)`: a device id is unique only within its school. */
  usage: Map<string, UsageSums>;
  uplink: Map<string, UplinkSums>;
  /**
   * By `entityKey(school, device)`: the last local date with at least one used class period, from
   * `lookbackFrom` to the period's end (never after it).
   */
  lastUsed: Map<string, string>;
  /** Per school, the rolled-up teaching dates (ascending) from `lookbackFrom` to the period's end. */
  schoolDays: Map<string, string[]>;
  /** Per school, its rolled-up teaching days in the period weighted by the share of their periods counted. */
  schoolDayWeight: Map<string, number>;
  /** Dates in the period that have been rolled up. */
  rolledDates: string[];
  lookbackFrom: string;
}

/** The longest look-back for "last used", in calendar days before the period's end. */
export const MAX_LOOKBACK_DAYS = 400;

/**
 * Calendar days before the period's end that "last used" looks back (api/README.md#definitions, look-back): far
 * enough that each of `calendars` has `idleDays` teaching days from there to the period's end — or to `today`
 * when that is earlier, since later days are not rolled up — so that a vacation in between never hides idle
 * equipment; not before a calendar's first term; at most MAX_LOOKBACK_DAYS. Without calendars, an estimate
 * (five teaching days a week plus three weeks of holidays) for callers that have none.
 */
export function lookbackDaysFor(
  idleDays: number,
  by?: { calendars: Iterable<Calendar>; to: string; today?: string },
): number {
  if (!by) return Math.min(200, Math.ceil((idleDays * 7) / 5) + 21);
  const end = dayNumber(by.to);
  const last = Math.min(end, by.today === undefined ? end : dayNumber(by.today));
  let back = Math.max(0, end - last);
  for (const cal of by.calendars) {
    // The earliest start with `idleDays` teaching days in [start, last]; never before the calendar's first
    // term (no earlier day is a teaching day by it, so none could count).
    const first = Math.min(...(cal.def.terms ?? []).map((t) => dayNumber(t.start)));
    let start = last + 1;
    for (let found = 0; found < idleDays && start > first && end - (start - 1) <= MAX_LOOKBACK_DAYS; ) {
      start--;
      if (cal.day(dateOf(start)).kind === 'teaching') found++;
    }
    back = Math.max(back, end - start);
  }
  return Math.min(MAX_LOOKBACK_DAYS, back);
}

/** The distinct calendars the registry's schools resolve to. */
export function calendarsInUse(reg: RegistryIndex, cals: Calendars): Calendar[] {
  const out = new Map<string, Calendar>();
  for (const s of reg.data.schools) {
    const cal = cals.forSchool(s.id, reg.regionPath(s.region));
    if (cal) out.set(cal.def.id, cal);
  }
  return [...out.values()];
}

/**
 * Full-day teaching buckets of a school on a date by its calendar *now*; 0 when it is not a teaching day (a
 * day declared a holiday after it was rolled up no longer counts).
 */
export type TeachingBuckets = (school: string, date: string, bucketS: number) => number;

/** Sums a period's daily rollups from the day cache (loading what is missing). */
export async function loadPeriod(
  days: DayCache,
  period: Period,
  lookbackDays: number,
  teaches: TeachingBuckets,
): Promise<PeriodData> {
  const lookbackFrom = dateOf(Math.min(dayNumber(period.from), dayNumber(period.to) - lookbackDays));
  await days.ensure(lookbackFrom, period.to);
  const n = days.deviceIds.length;
  const acc = new Float64Array(n * 7); // online, on, use, faulty, periodsUsed, onlineDays, usedDays
  const seen = new Uint8Array(n);
  const uplink = new Map<string, UplinkSums>();
  const schoolDays = new Map<string, string[]>();
  const schoolDayWeight = new Map<string, number>();
  const rolledDates: string[] = [];
  const lastUsed = new Map<string, string>();
  let bucketS = 0;
  for (let d = dayNumber(lookbackFrom); d <= dayNumber(period.to); d++) {
    const date = dateOf(d);
    const day = days.day(date);
    if (!day || day.marker === null) continue;
    const inPeriod = date >= period.from;
    if (inPeriod) rolledDates.push(date);
    bucketS = day.bucketS || bucketS;
    // The schools that count this day: rolled up with some teaching time, and teaching by today's calendar.
    const counted = new Set<string>();
    for (const [school, u] of day.uplink) {
      const full = teaches(school, date, day.bucketS);
      if (full <= 0 || u.teachingB <= 0) continue;
      counted.add(school);
      let list = schoolDays.get(school);
      if (!list) {
        list = [];
        schoolDays.set(school, list);
      }
      list.push(date);
      if (!inPeriod) continue;
      schoolDayWeight.set(school, (schoolDayWeight.get(school) ?? 0) + Math.min(1, u.teachingB / full));
      let x = uplink.get(school);
      if (!x) {
        x = {
          teachingB: 0,
          dataB: 0,
          upB: 0,
          over: { 50: 0, 60: 0, 70: 0, 80: 0, 90: 0 },
          p95MaxPct: null,
          speedMbps: null,
        };
        uplink.set(school, x);
      }
      x.teachingB += u.teachingB;
      x.dataB += u.dataB;
      x.upB += u.upB;
      x.over[50] += u.over[0];
      x.over[60] += u.over[1];
      x.over[70] += u.over[2];
      x.over[80] += u.over[3];
      x.over[90] += u.over[4];
      if (u.p95 !== null) x.p95MaxPct = Math.max(x.p95MaxPct ?? 0, u.p95);
      if (u.speedMbps !== null) x.speedMbps = Math.max(x.speedMbps ?? 0, u.speedMbps);
    }
    const m = Math.min(n, day.present.length);
    for (let i = 0; i < m; i++) {
      if (!day.present[i] || !counted.has(days.deviceSchool[i]!)) continue;
      // A day is used when at least one class period was (in use for ≥ half of it): the same rule as periods.
      const used = DayCache.get(day, i, 4);
      // Ascending dates: the last write is the latest.
      if (used > 0) lastUsed.set(entityKey(days.deviceSchool[i]!, days.deviceIds[i]!), date);
      if (!inPeriod) continue;
      seen[i] = 1;
      const online = DayCache.get(day, i, 0);
      const b = i * 7;
      acc[b] = acc[b]! + online;
      acc[b + 1] = acc[b + 1]! + DayCache.get(day, i, 1);
      acc[b + 2] = acc[b + 2]! + DayCache.get(day, i, 2);
      acc[b + 3] = acc[b + 3]! + DayCache.get(day, i, 3);
      acc[b + 4] = acc[b + 4]! + used;
      if (online > 0) acc[b + 5] = acc[b + 5]! + 1;
      if (used > 0) acc[b + 6] = acc[b + 6]! + 1;
    }
  }
  const usage = new Map<string, UsageSums>();
  for (let i = 0; i < n; i++) {
    if (!seen[i]) continue;
    usage.set(entityKey(days.deviceSchool[i]!, days.deviceIds[i]!), {
      onlineB: acc[i * 7]!,
      onB: acc[i * 7 + 1]!,
      useB: acc[i * 7 + 2]!,
      faultyB: acc[i * 7 + 3]!,
      periodsUsed: acc[i * 7 + 4]!,
      onlineDays: acc[i * 7 + 5]!,
      usedDays: acc[i * 7 + 6]!,
      bucketS,
    });
  }
  return { period, usage, uplink, lastUsed, schoolDays, schoolDayWeight, rolledDates, lookbackFrom };
}

/** The teaching-day test of `loadPeriod` from the registry and the calendars (memoised). */
export function teachingBuckets(reg: RegistryIndex, cals: Calendars): TeachingBuckets {
  const calOf = new Map<string, Calendar | undefined>();
  const memo = new Map<string, number>();
  return (school, date, bucketS) => {
    let cal = calOf.get(school);
    if (!calOf.has(school)) {
      const s = reg.schools.get(school);
      cal = s ? cals.forSchool(school, reg.regionPath(s.region)) : undefined;
      calOf.set(school, cal);
    }
    if (!cal || bucketS <= 0) return 0;
    const key = `${cal.def.id}|${date}|${bucketS}`;
    let v = memo.get(key);
    if (v === undefined) {
      const info = cal.day(date);
      v =
        info.kind === 'teaching' ? info.periods.reduce((a, p) => a + periodBuckets(p, bucketS * 1000), 0) : 0;
      memo.set(key, v);
    }
    return v;
  };
}

/** How many of the sorted `dates` come after `after` (all of them when undefined). */
export function countAfter(dates: readonly string[], after: string | undefined): number {
  if (after === undefined) return dates.length;
  let lo = 0;
  let hi = dates.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (dates[mid]! <= after) lo = mid + 1;
    else hi = mid;
  }
  return dates.length - lo;
}

// ---- rounding ------------------------------------------------------------------------------------------------

/** Decimals of each kind of output figure (api/README.md#definitions, rounding). */
export const DIGITS = {
  /** Percentages and shares: availability, busy, faulty, used days, 校校通/班班通 rates. */
  pct: 2,
  /** 生机比 / 师机比. */
  ratio: 2,
  /** Per-class bandwidth. */
  mbps: 2,
  /** Powered-on and in-use hours. */
  hours: 2,
  /** 班班通 use: class periods per teaching week. */
  periodsPerWeek: 1,
} as const;

/**
 * The one rounding of every figure the API outputs: to `digits` decimals, half away from zero. A value less
 * than 1e-12 (relative) below a half counts as the half: that is the float error of a division or of a decimal
 * shift (1.005 × 100 = 100.49999999999999); ratios of the counts here (≤ 10^6) that are not a half differ from
 * it by far more. Figures are compared with thresholds before rounding; only what is shown is rounded.
 */
export function roundHalfAway(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  const y = Math.abs(x) * f;
  const whole = Math.floor(y);
  const r = y - whole >= 0.5 - 1e-12 * Math.max(1, y) ? whole + 1 : whole;
  return (Math.sign(x) * r) / f || 0; // never -0
}

/** a ÷ b in per cent, unrounded; null without a denominator. */
const share = (a: number, b: number): number | null => (b > 0 ? (100 * a) / b : null);
const out = (x: number | null, digits: number): number | null =>
  x === null ? null : roundHalfAway(x, digits);

/**
 * A figure in a reason's message: rounded as in the output, with more decimals while the rounded figure would
 * equal the threshold it failed (so a message never says "99 % is below 99 %").
 */
function shown(x: number, digits: number, limit: number): string {
  let d = digits;
  let v = roundHalfAway(x, d);
  while (v === limit && x !== limit && d < digits + 6) v = roundHalfAway(x, ++d);
  return String(v);
}

// ---- evaluation ----------------------------------------------------------------------------------------------

export interface Reason {
  /** Stable code (documented in api/README.md). */
  code:
    | 'no_calendar'
    | 'no_teaching_time'
    | 'not_rolled_up'
    | 'no_uplink_registered'
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
    /** null: not known — the school has no rolled-up teaching day in the period (not judged, or no calendar). */
    monitored: boolean | null;
    /** null: not measured (no rolled-up teaching day, or no uplink registered); never 0 for "not measured". */
    availabilityPct: number | null;
    capacityMbps: number | null;
    capacitySource: 'contract' | 'polled' | null;
    perClassMbps: number | null;
    /** Share of teaching-time buckets with readings at or above the profile's congestion threshold. */
    busyPct: number | null;
    /** null: no uplink readings to judge it by. */
    congested: boolean | null;
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
  /** null: no teaching week measured (its school is not judged, or has no calendar). */
  periodsUsedPerWeek: number | null;
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
  /** Teaching days in the period with at least one used class period. */
  daysUsed: number;
  teachingDays: number;
  usedDaysPct: number | null;
  /** The last day used from the evaluation's `lookbackFrom` to the period's end; null: none in that window. */
  lastUsed: string | null;
  /** Rolled-up teaching days of its school after `lastUsed` (after `lookbackFrom` when null) to the period's end. */
  idleTeachingDays: number;
  idle: boolean;
}

export interface Coverage {
  /** Teaching dates (of the calendars of the schools counted) in the period so far that are rolled up. */
  rolledDays: number;
  /** Dates in the period so far on which at least one school counted teaches. */
  teachingDates: number;
}

export interface Evaluation {
  period: Period;
  profile: string;
  /** Coverage over every school of the registry; `coverage(ev, reg, scope)` for a scope. */
  coverage: Coverage;
  /** Where "last used" looked back from (api/README.md#definitions). */
  lookbackFrom: string;
  schools: SchoolResult[];
  classrooms: ClassroomResult[];
  devices: DeviceAudit[];
  /** Per school, its calendar's id (schools without a calendar are absent). */
  calendarOf: Map<string, string>;
  /** Per calendar id, its teaching dates in the period so far. */
  teachingDatesOf: Map<string, readonly string[]>;
  rolledDates: readonly string[];
}

/** Evaluates every school of the registry (scope filtering happens on the result). */
export function evaluate(
  data: PeriodData,
  reg: RegistryIndex,
  cals: Calendars,
  profile: Profile,
  opts: { idleDays?: number; today?: string } = {},
): Evaluation {
  const { from, to } = data.period;
  const idleDays = opts.idleDays ?? profile.idleDays;
  const schools: SchoolResult[] = [];
  const classrooms: ClassroomResult[] = [];
  const devices: DeviceAudit[] = [];
  const calendarOf = new Map<string, string>();
  const teachingDatesOf = new Map<string, readonly string[]>();

  const today = opts.today ?? localDate(Date.now());
  const until = to < today ? to : today;
  for (const s of reg.data.schools) {
    const path = reg.regionPath(s.region);
    const cal = cals.forSchool(s.id, path);
    // Teaching days the calendar has had so far in the period, and those the rollups counted.
    const calendarDays = cal && from <= until ? cal.teachingDays(from, until) : [];
    if (cal) {
      calendarOf.set(s.id, cal.def.id);
      if (!teachingDatesOf.has(cal.def.id))
        teachingDatesOf.set(
          cal.def.id,
          calendarDays.map((d) => d.date),
        );
    }
    const allDays = data.schoolDays.get(s.id) ?? [];
    const teachingDays = countAfter(allDays, dateOf(dayNumber(from) - 1));
    const weeks = cal && cal.daysPerWeek > 0 ? (data.schoolDayWeight.get(s.id) ?? 0) / cal.daysPerWeek : 0;
    // Measured: at least one rolled-up teaching day in the period (so a calendar covers the school).
    const measured = teachingDays > 0;

    // 校校通. A school has an uplink to measure when the registry names a device that can carry it — its
    // uplinkDevice, else a registered router or switch (as the rollup reads it: carriesUplink in live.ts).
    const hasUplink =
      s.uplinkDevice !== undefined ||
      (reg.devicesBySchool.get(s.id) ?? []).some((d) => d.kind === 'router' || d.kind === 'switch');
    const up = measured && hasUplink ? data.uplink.get(s.id) : undefined;
    const reasons: Reason[] = [];
    const monitored = measured ? up !== undefined && up.dataB > 0 : null;
    // A bucket without data counts as down: a school whose uplink is down cannot report either.
    const availability = up ? share(up.upB, up.teachingB) : null;
    const capacityMbps = s.contractedMbps ?? up?.speedMbps ?? null;
    const capacitySource = s.contractedMbps ? 'contract' : up?.speedMbps ? 'polled' : null;
    const perClass = capacityMbps !== null && s.classes > 0 ? capacityMbps / s.classes : null;
    const overB = up ? up.over[profile.congestionPct] : 0;
    const busy = up && up.dataB > 0 ? share(overB, up.dataB) : null;
    // "95th percentile ≥ threshold" ⟺ at least 5 % of the samples are at or above it (counts, not rounded).
    const congested = up && up.dataB > 0 ? overB * 20 >= up.dataB : null;
    const perClassMin = profile.perClassMbps[s.area];
    const availabilityMin = profile.minUplinkAvailabilityPct;
    if (!hasUplink)
      reasons.push({
        code: 'no_uplink_registered',
        message: 'no uplink device registered for this school: its availability is not measured',
      });
    else if (!monitored)
      reasons.push({ code: 'uplink_not_monitored', message: 'no uplink readings in teaching time' });
    else if (availability !== null && availability < availabilityMin)
      reasons.push({
        code: 'uplink_availability_low',
        message: `uplink up ${shown(availability, DIGITS.pct, availabilityMin)} % of teaching time (${up!.upB} of ${up!.teachingB} buckets), below ${availabilityMin} %`,
      });
    if (capacityMbps !== null && capacityMbps < profile.minUplinkMbps)
      reasons.push({
        code: 'uplink_capacity_low',
        message: `uplink ${capacityMbps} Mbps, below ${profile.minUplinkMbps} Mbps`,
      });
    if (perClass !== null && perClass < perClassMin)
      reasons.push({
        code: 'per_class_bandwidth_low',
        message: `${shown(perClass, DIGITS.mbps, perClassMin)} Mbps per class (${capacityMbps} Mbps ÷ ${s.classes} classes), below ${perClassMin} Mbps for ${s.area} schools`,
      });
    if (congested)
      reasons.push({
        code: 'uplink_congested',
        message: `95th-percentile utilisation at or above ${profile.congestionPct} % (${shown(busy!, DIGITS.pct, 5)} % of teaching time)`,
      });
    // Not judged: no teaching day yet (a vacation), or teaching days not rolled up yet. Judged and failed: no
    // calendar at all — a school must not drop out of the statistics because nobody entered its 校历.
    let applicable = measured;
    if (!cal) {
      reasons.length = 0;
      reasons.push({ code: 'no_calendar', message: 'no school calendar covers this school' });
      applicable = true;
    } else if (!applicable) {
      reasons.length = 0;
      reasons.push(
        calendarDays.length === 0
          ? {
              code: 'no_teaching_time',
              message: 'no teaching day in this period so far (vacation or holidays)',
            }
          : {
              code: 'not_rolled_up',
              message: `${calendarDays.length} teaching days in the period, none rolled up yet`,
            },
      );
    }
    const xxtAttained = applicable ? reasons.length === 0 : null;
    // What the school's rooms carry instead of their own reasons when nothing of theirs was measured.
    const unmeasured = measured ? undefined : reasons[0]!;

    // 班班通 and the audit
    const rooms = (reg.classroomsBySchool.get(s.id) ?? []).filter((c) => c.isClass);
    let attained = 0;
    for (const room of rooms) {
      const r = unmeasured
        ? unmeasuredClassroom(room, reg, xxtAttained, unmeasured)
        : evaluateClassroom(room, reg, data, profile, teachingDays, weeks, xxtAttained!);
      if (r.attained === true) attained++;
      classrooms.push(r);
    }
    let teacherWorking = 0;
    let studentWorking = 0;
    for (const d of reg.devicesBySchool.get(s.id) ?? []) {
      const key = entityKey(s.id, d.id);
      const u = data.usage.get(key);
      if (d.kind === 'teacher_pc' && (u?.onlineDays ?? 0) > 0) teacherWorking++;
      if (d.kind === 'student_pc' && (u?.onlineDays ?? 0) > 0) studentWorking++;
      if (d.kind === 'router' || d.kind === 'switch' || d.kind === 'ap') continue;
      const hours = (b: number) => roundHalfAway((b * (u?.bucketS ?? 0)) / 3600, DIGITS.hours);
      const lastUsed = data.lastUsed.get(key) ?? null;
      // Rolled-up teaching days of its school since it was last used (since the look-back start if never).
      const idleTeachingDays = countAfter(allDays, lastUsed ?? undefined);
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
        usedDaysPct: out(share(u?.usedDays ?? 0, teachingDays), DIGITS.pct),
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
        availabilityPct: out(availability, DIGITS.pct),
        capacityMbps,
        capacitySource,
        perClassMbps: out(perClass, DIGITS.mbps),
        busyPct: out(busy, DIGITS.pct),
        congested,
        p95MaxDayPct: out(up?.p95MaxPct ?? null, DIGITS.pct),
      },
      xxt: { attained: xxtAttained, reasons },
      bbt: { classes: counted, attained, unmonitored: counted - rooms.length },
      computers: { teacherWorking, studentWorking },
    });
  }
  const ev: Evaluation = {
    period: data.period,
    profile: profile.id,
    coverage: { rolledDays: 0, teachingDates: 0 },
    lookbackFrom: data.lookbackFrom,
    schools,
    classrooms,
    devices,
    calendarOf,
    teachingDatesOf,
    rolledDates: data.rolledDates,
  };
  ev.coverage = coverage(ev, reg, undefined);
  return ev;
}

/**
 * Rollup coverage for the schools in `scope` (api/README.md#definitions, coverage): the teaching dates of their
 * own calendars only — another county's calendar says nothing about whether this county's days are rolled up.
 */
export function coverage(ev: Evaluation, reg: RegistryIndex, scope: string | undefined): Coverage {
  const calendars = new Set<string>();
  for (const [school, cal] of ev.calendarOf) if (reg.schoolInScope(school, scope)) calendars.add(cal);
  const dates = new Set<string>();
  for (const cal of calendars) for (const d of ev.teachingDatesOf.get(cal) ?? []) dates.add(d);
  return { rolledDays: ev.rolledDates.filter((d) => dates.has(d)).length, teachingDates: dates.size };
}

/**
 * A class room of a school with nothing measured in the period: it carries its school's not-judged reason
 * (`no_teaching_time`, `not_rolled_up`, `no_calendar`) and no other — nothing about the room itself is known.
 * Judged like its school: not at all in a vacation, failed without a calendar.
 */
function unmeasuredClassroom(
  room: Classroom,
  reg: RegistryIndex,
  schoolAttained: boolean | null,
  reason: Reason,
): ClassroomResult {
  const displays = reg
    .devicesIn(room.school, room.id)
    .filter((d) => (DISPLAY_KINDS as readonly string[]).includes(d.kind));
  return {
    id: room.id,
    school: room.school,
    name: room.name,
    attained: schoolAttained,
    reasons: [{ ...reason }],
    equipped: displays.length > 0,
    onlineDays: 0,
    teachingDays: 0,
    periodsUsedPerWeek: null,
    faultyPct: null,
  };
}

function evaluateClassroom(
  room: Classroom,
  reg: RegistryIndex,
  data: PeriodData,
  profile: Profile,
  teachingDays: number,
  weeks: number,
  schoolConnected: boolean,
): ClassroomResult {
  const devs = reg.devicesIn(room.school, room.id);
  const displays = devs.filter((d) => (DISPLAY_KINDS as readonly string[]).includes(d.kind));
  const reasons: Reason[] = [];
  // A classroom's figures are its best display's (two displays do not double its use).
  let onlineDays = 0;
  let periodsUsed = 0;
  let onlineB = 0;
  let faultyB = 0;
  for (const d of displays) {
    const u = data.usage.get(entityKey(room.school, d.id));
    if (!u) continue;
    onlineDays = Math.max(onlineDays, u.onlineDays);
    periodsUsed = Math.max(periodsUsed, u.periodsUsed);
    if (u.onlineB > onlineB) {
      onlineB = u.onlineB;
      faultyB = u.faultyB;
    }
  }
  const equipped = displays.length > 0;
  // Unrounded figures decide; the output is rounded.
  const perWeek = weeks > 0 ? periodsUsed / weeks : null;
  const faulty = share(faultyB, onlineB);
  const online = share(onlineDays, teachingDays) ?? 0;
  if (!equipped) {
    reasons.push({ code: 'not_equipped', message: 'no teaching display registered in this classroom' });
  } else {
    if (online < profile.minOnlineDaysPct)
      reasons.push({
        code: 'offline_too_often',
        message: `online on ${onlineDays} of ${teachingDays} teaching days (${shown(online, DIGITS.pct, profile.minOnlineDaysPct)} %), below ${profile.minOnlineDaysPct} %`,
      });
    if (faulty !== null && faulty > profile.maxFaultyPct)
      reasons.push({
        code: 'unhealthy',
        message: `faults reported in ${shown(faulty, DIGITS.pct, profile.maxFaultyPct)} % of online teaching time, above ${profile.maxFaultyPct} %`,
      });
    if ((perWeek ?? 0) < profile.minUsePeriodsPerWeek)
      reasons.push({
        code: 'used_too_little',
        message: `used in ${shown(perWeek ?? 0, DIGITS.periodsPerWeek, profile.minUsePeriodsPerWeek)} class periods per teaching week, below ${profile.minUsePeriodsPerWeek}`,
      });
  }
  if (!schoolConnected)
    reasons.push({ code: 'school_not_connected', message: "the school's uplink does not attain 校校通" });
  return {
    id: room.id,
    school: room.school,
    name: room.name,
    attained: reasons.length === 0,
    reasons,
    equipped,
    onlineDays,
    teachingDays,
    periodsUsedPerWeek: out(perWeek, DIGITS.periodsPerWeek),
    faultyPct: out(faulty, DIGITS.pct),
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
  /** Every registered school of the group, judged in the period or not. */
  schools: number;
  /** Schools judged for 校校通 in the period (with teaching time, or failed for want of a calendar). */
  judgedSchools: number;
  /** schools − judgedSchools: no teaching time in the period, or not rolled up yet. */
  schoolsNotApplicable: number;
  schoolsAttained: number;
  /** schoolsAttained ÷ judgedSchools. */
  xxtPct: number | null;
  /** Classes, students, teachers and working computers: of the judged schools only. */
  classes: number;
  classesAttained: number;
  bbtPct: number | null;
  classesUnmonitored: number;
  students: number;
  teachers: number;
  studentComputers: number;
  teacherComputers: number;
  /** 生机比: students ÷ working student computers, both of the judged schools; null without any. */
  studentsPerComputer: number | null;
  /** 师机比: teachers ÷ working teacher computers, both of the judged schools. */
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
        judgedSchools: 0,
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
    r.schools++;
    if (s.xxt.attained === null) {
      r.schoolsNotApplicable++;
      return;
    }
    // Every other figure over the same judged schools, so a school without data never skews a ratio.
    r.judgedSchools++;
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
    r.xxtPct = out(share(r.schoolsAttained, r.judgedSchools), DIGITS.pct);
    r.bbtPct = out(share(r.classesAttained, r.classes), DIGITS.pct);
    r.studentsPerComputer =
      r.studentComputers > 0 ? roundHalfAway(r.students / r.studentComputers, DIGITS.ratio) : null;
    r.teachersPerComputer =
      r.teacherComputers > 0 ? roundHalfAway(r.teachers / r.teacherComputers, DIGITS.ratio) : null;
  }
  return rows.sort((a, b) =>
    a.region === b.region ? (a.split + a.group < b.split + b.group ? -1 : 1) : a.region < b.region ? -1 : 1,
  );
}

// ---- attainment for dashboards --------------------------------------------------------------------------------

/**
 * An evaluation as `attainment_day` points (one per school, at `atMs`), so Grafana can chart and tabulate
 * attainment with plain InfluxQL: the same figures as /v1/attainment for the evaluation's period.
 */
export function attainmentPoints(
  ev: Evaluation,
  reg: RegistryIndex,
  atMs: number,
): PointOf<'attainment_day'>[] {
  const windowDays = dayNumber(ev.period.to) - dayNumber(ev.period.from) + 1;
  return ev.schools.map((s) => {
    const school = reg.schools.get(s.id);
    const region = school ? reg.regions.get(school.region) : undefined;
    const u = s.uplink;
    return {
      measurement: 'attainment_day',
      ts: atMs,
      tags: {
        region: reg.schoolPath(s.id) ?? s.region,
        region_name: region?.name ?? s.region,
        school: s.id,
        school_name: s.name,
        area: s.area,
        level: s.level,
        profile: ev.profile,
      },
      fields: {
        window_days: windowDays,
        teaching_days: s.teachingDays,
        judged: s.xxt.attained === null ? 0 : 1,
        ...(s.xxt.attained === null ? {} : { xxt: s.xxt.attained ? 1 : 0 }),
        ...(u.availabilityPct === null ? {} : { availability_pct: u.availabilityPct }),
        ...(u.perClassMbps === null ? {} : { per_class_mbps: u.perClassMbps }),
        ...(u.busyPct === null ? {} : { busy_pct: u.busyPct }),
        classes: s.bbt.classes,
        classes_attained: s.bbt.attained,
        classes_unmonitored: s.bbt.unmonitored,
        students: s.students,
        teachers: s.teachers,
        student_computers: s.computers.studentWorking,
        teacher_computers: s.computers.teacherWorking,
      },
    };
  });
}
