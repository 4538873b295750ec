import type { Calendar, Calendars } from '../calendar.js';
import { dateOf, dayNumber } from '../calendar.js';
import type { RegistryIndex } from '../registry/store.js';
import { type DayCache, periodBuckets, U, USAGE_FIELDS } from './days.js';

/**
 * 校校通 / 班班通 attainment and the usage audit for a period (design: api/README.md#computations), step one:
 * `loadPeriod` sums the period's rollups per device and per school with one InfluxQL request (the expensive,
 * cacheable part). Step two, `evaluate` (evaluate.ts), joins them with the registry and calendars under a
 * profile (cheap, pure).
 */

export interface Period {
  /** Inclusive local dates. */
  from: string;
  to: string;
}

export interface UsageSums {
  /** Teaching-time buckets (of the school's counted teaching days): online, on, in use, faulty. */
  onlineB: number;
  onB: number;
  useB: number;
  faultyB: number;
  periodsUsed: number;
  onlineDays: number;
  usedDays: number;
  /** Teaching buckets on but not in use. */
  unusedB: number;
  /** Teaching buckets with activity evidence: the rest of its online time rests on power alone. */
  activityB: number;
  /** Buckets on outside teaching time, on every rolled-up day of the period (teaching or not). */
  leftOnB: number;
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
  /** Probe buckets in teaching time, those with an answer, and their quality cells (common/figures/quality.ts). */
  probeB: number;
  reachB: number;
  quality: Map<string, number>;
  /** Buckets up by either measure: the interface up (SNMP), or a probe answered. */
  availB: number;
  /** Probes sent and lost in the answered buckets: the period's pooled loss. */
  probeSent: number;
  probeLost: number;
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
  const NF = USAGE_FIELDS.length;
  const W = 10; // online, on, use, faulty, periodsUsed, onlineDays, usedDays, unused, activity, leftOn
  const acc = new Float64Array(n * W);
  const seen = new Uint8Array(n);
  const uplink = new Map<string, UplinkSums>();
  const schoolDays = new Map<string, string[]>();
  const schoolDayWeight = new Map<string, number>();
  const rolledDates: string[] = [];
  // Per device slot, the day number of its last used day (0: none): one Map entry per device at the end, not
  // a key built and set per device per day.
  const lastUsedDay = new Int32Array(n);
  let bucketS = 0;
  for (let d = dayNumber(lookbackFrom); d <= dayNumber(period.to); d++) {
    const date = dateOf(d);
    const day = days.day(date);
    if (!day || day.marker === null) continue;
    const inPeriod = date >= period.from;
    if (inPeriod) rolledDates.push(date);
    bucketS = day.bucketS || bucketS;
    // The schools that count this day: rolled up with some teaching time, and teaching by today's calendar.
    const counted = new Uint8Array(days.schoolNo.size); // by school number
    for (const [school, u] of day.uplink) {
      const full = teaches(school, date, day.bucketS);
      if (full <= 0 || u.teachingB <= 0) continue;
      const no = days.schoolNo.get(school);
      if (no !== undefined) counted[no] = 1; // a school without a device slot has no device to count
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
          probeB: 0,
          reachB: 0,
          quality: new Map(),
          availB: 0,
          probeSent: 0,
          probeLost: 0,
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
      x.probeB += u.probeB;
      x.reachB += u.reachB;
      x.availB += u.availB;
      x.probeSent += u.probeSent;
      x.probeLost += u.probeLost;
      for (const [cell, n] of u.quality) x.quality.set(cell, (x.quality.get(cell) ?? 0) + n);
    }
    // A device present this day has its counters at usage[i × NF …] (DayCache.get, without its checks).
    const { present, usage: du } = day;
    const schoolOf = days.deviceSchoolNo;
    const m = Math.min(n, present.length);
    for (let i = 0; i < m; i++) {
      if (!present[i]) continue;
      const b = i * W;
      const c = i * NF;
      // Left on counts on every rolled-up day, a school's teaching day or not (weekends, vacations).
      if (inPeriod) {
        seen[i] = 1;
        acc[b + 9] = acc[b + 9]! + du[c + U.leftOn]!;
      }
      if (!counted[schoolOf[i]!]) continue;
      // A day is used when at least one class period was (in use for ≥ half of it): the same rule as periods.
      const used = du[c + U.periodsUsed]!;
      // Ascending dates: the last write is the latest.
      if (used > 0) lastUsedDay[i] = d;
      if (!inPeriod) continue;
      const online = du[c + U.online]!;
      acc[b] = acc[b]! + online;
      acc[b + 1] = acc[b + 1]! + du[c + U.on]!;
      acc[b + 2] = acc[b + 2]! + du[c + U.use]!;
      acc[b + 3] = acc[b + 3]! + du[c + U.faulty]!;
      acc[b + 4] = acc[b + 4]! + used;
      if (online > 0) acc[b + 5] = acc[b + 5]! + 1;
      if (used > 0) acc[b + 6] = acc[b + 6]! + 1;
      acc[b + 7] = acc[b + 7]! + du[c + U.unused]!;
      acc[b + 8] = acc[b + 8]! + du[c + U.activity]!;
    }
  }
  const lastUsed = new Map<string, string>();
  for (let i = 0; i < n; i++) if (lastUsedDay[i]) lastUsed.set(days.deviceKeys[i]!, dateOf(lastUsedDay[i]!));
  const usage = new Map<string, UsageSums>();
  for (let i = 0; i < n; i++) {
    if (!seen[i]) continue;
    const b = i * W;
    usage.set(days.deviceKeys[i]!, {
      onlineB: acc[b]!,
      onB: acc[b + 1]!,
      useB: acc[b + 2]!,
      faultyB: acc[b + 3]!,
      periodsUsed: acc[b + 4]!,
      onlineDays: acc[b + 5]!,
      usedDays: acc[b + 6]!,
      unusedB: acc[b + 7]!,
      activityB: acc[b + 8]!,
      leftOnB: acc[b + 9]!,
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
