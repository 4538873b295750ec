import type { School } from '../../contracts/registry.js';
import { type Calendar, type Calendars, type DayInfo, dateOf, dayNumber, localDate } from '../calendar.js';
import { entityKey } from '../registry/key.js';
import type { RegistryIndex } from '../registry/store.js';
import { uplinkCapacity } from './capacity.js';
import { evaluateClassroom, unmeasuredClassroom } from './classrooms.js';
import type { PeriodData, UplinkSums } from './load.js';
import type { Profile } from './profiles.js';
import { bucketsOver, pooledLossOver } from './quality.js';
import type { ClassroomResult, Coverage, DeviceAudit, Evaluation, Reason, SchoolResult } from './results.js';
import { DIGITS, rounded, roundHalfAway, share, shown } from './rounding.js';
import { periodUseBasis } from './usage.js';

/**
 * 校校通 / 班班通 attainment and the usage audit for a period (design: api/README.md#computations), step two:
 * `evaluate` joins the period's sums (load.ts) with the registry and calendars under a profile (cheap, pure).
 * Per school, in order: its teaching time, its uplink figures, the 校校通 verdict, its class rooms (班班通), its
 * devices (the audit) and its computers.
 */

/** Evaluates every school of the registry (scope filtering happens on the result). */
export function evaluate(
  data: PeriodData,
  reg: RegistryIndex,
  cals: Calendars,
  profile: Profile,
  opts: { idleDays?: number; today?: string } = {},
): Evaluation {
  const idleDays = opts.idleDays ?? profile.idleDays;
  const today = opts.today ?? localDate(Date.now());
  const until = data.period.to < today ? data.period.to : today;
  const ev: Evaluation = {
    period: data.period,
    profile: profile.id,
    coverage: { rolledDays: 0, teachingDates: 0 },
    lookbackFrom: data.lookbackFrom,
    idleDays,
    schools: [],
    classrooms: [],
    devices: [],
    calendarOf: new Map(),
    teachingDatesOf: new Map(),
    rolledDates: data.rolledDates,
  };
  for (const s of reg.data.schools) {
    const region = reg.regionPath(s.region);
    const time = teachingTime(s, region, data, cals, until);
    noteCalendar(ev, s, time);
    const uplink = uplinkFigures(s, reg, data, profile, time.measured);
    const xxt = judgeXxt(time, uplinkReasons(s, profile, uplink));
    const rooms = judgeClassrooms(s, reg, data, profile, time, xxt);
    for (const r of rooms) ev.classrooms.push(r);
    for (const d of auditDevices(s, reg, data, time, idleDays)) ev.devices.push(d);
    ev.schools.push(schoolResult(s, region, time, uplink, xxt, rooms, workingComputers(s, reg, data)));
  }
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

// ---- teaching time -------------------------------------------------------------------------------------------

/** A school's teaching time in the period: by its calendar, and as the rollups counted it. */
interface TeachingTime {
  cal: Calendar | undefined;
  /** Teaching days its calendar has had so far in the period (to `until`). */
  calendarDays: DayInfo[];
  /** Its rolled-up teaching dates from the look-back start to the period's end (PeriodData.schoolDays). */
  allDays: readonly string[];
  /** Of those, the ones in the period. */
  teachingDays: number;
  /** Teaching weeks in the period: its weighted teaching days over its calendar's days per week. */
  weeks: number;
  /** At least one rolled-up teaching day in the period (so a calendar covers the school). */
  measured: boolean;
}

/** `until`: the period's last day so far (its end, or today when that is earlier). */
function teachingTime(
  s: School,
  region: string,
  data: PeriodData,
  cals: Calendars,
  until: string,
): TeachingTime {
  const { from } = data.period;
  const cal = cals.forSchool(s.id, region);
  const calendarDays = cal && from <= until ? cal.teachingDays(from, until) : [];
  const allDays = data.schoolDays.get(s.id) ?? [];
  const teachingDays = countAfter(allDays, dateOf(dayNumber(from) - 1));
  const weeks = cal && cal.daysPerWeek > 0 ? (data.schoolDayWeight.get(s.id) ?? 0) / cal.daysPerWeek : 0;
  return { cal, calendarDays, allDays, teachingDays, weeks, measured: teachingDays > 0 };
}

/** Records the school's calendar and that calendar's teaching dates, which `coverage` counts. */
function noteCalendar(ev: Evaluation, s: School, time: TeachingTime): void {
  const { cal } = time;
  if (!cal) return;
  ev.calendarOf.set(s.id, cal.def.id);
  if (!ev.teachingDatesOf.has(cal.def.id))
    ev.teachingDatesOf.set(
      cal.def.id,
      time.calendarDays.map((d) => d.date),
    );
}

// ---- 校校通 -----------------------------------------------------------------------------------------------------

/** A school's uplink in the period, unrounded: these decide; the output is rounded. */
interface UplinkFigures {
  hasUplink: boolean;
  /** The uplink's sums; undefined when not measured or no uplink is registered. */
  up: UplinkSums | undefined;
  monitored: boolean | null;
  availability: number | null;
  capacityMbps: number | null;
  capacitySource: 'contract' | 'polled' | null;
  perClass: number | null;
  busy: number | null;
  congested: boolean | null;
  /** Share of the probed class time over the profile's link-quality thresholds; null: not judged. */
  qualityLow: number | null;
  qualityLowB: number;
  /** Pooled loss of the answered class time (%); null: never answered. */
  lossPct: number | null;
  lossOver: boolean;
  linkQualityLow: boolean | null;
}

function uplinkFigures(
  s: School,
  reg: RegistryIndex,
  data: PeriodData,
  profile: Profile,
  measured: boolean,
): UplinkFigures {
  // A school has an uplink to measure when the registry names a device that can carry it — its uplinkDevice,
  // else a registered router or switch (as the rollup reads it: carriesUplink in live.ts).
  const hasUplink =
    s.uplinkDevice !== undefined ||
    (reg.devicesBySchool.get(s.id) ?? []).some((d) => d.kind === 'router' || d.kind === 'switch');
  const up = measured && hasUplink ? data.uplink.get(s.id) : undefined;
  // Measured by SNMP (its interface) or by probes (docs/links.md): a school whose router answers no SNMP is
  // still judged when it is probed.
  const monitored = measured ? up !== undefined && (up.dataB > 0 || up.probeB > 0) : null;
  // A bucket without data counts as down: a school whose uplink is down cannot report either. Up by either
  // measure: the interface up, or a probe answered (SNMP silent while probes answer is management down).
  const availability = up ? share(up.availB, up.teachingB) : null;
  const { capacityMbps, capacitySource } = uplinkCapacity(s.contractedMbps, up?.speedMbps);
  const perClass = capacityMbps !== null && s.classes > 0 ? capacityMbps / s.classes : null;
  const overB = up ? up.over[profile.congestionPct] : 0;
  const busy = up && up.dataB > 0 ? share(overB, up.dataB) : null;
  // "95th percentile ≥ threshold" ⟺ at least 5 % of the samples are at or above it (counts, not rounded).
  const congested = up && up.dataB > 0 ? overB * 20 >= up.dataB : null;
  const lq = profile.linkQuality;
  // Judged over the answered class time: an unanswered bucket is an outage (availability), not low quality.
  const judged = lq !== undefined && up !== undefined && up.reachB > 0;
  const qualityLowB = judged ? bucketsOver(up.quality, lq) : 0;
  const qualityLow = judged ? share(qualityLowB, up.reachB) : null;
  const lossPct = up && up.probeSent > 0 ? share(up.probeLost, up.probeSent) : null;
  const lossOver = judged ? pooledLossOver(up.probeLost, up.probeSent, lq) : false;
  // Pooled loss above the threshold, or more than maxShareOverPct of the answered buckets over RTT or jitter
  // (counts, not rounded).
  const linkQualityLow = judged ? lossOver || qualityLowB * 100 > lq.maxShareOverPct * up.reachB : null;
  return {
    hasUplink,
    up,
    monitored,
    availability,
    capacityMbps,
    capacitySource,
    perClass,
    busy,
    congested,
    qualityLow,
    qualityLowB,
    lossPct,
    lossOver,
    linkQualityLow,
  };
}

/** What the uplink fails of the profile's 校校通 rules; none: attained. */
function uplinkReasons(s: School, profile: Profile, f: UplinkFigures): Reason[] {
  const reasons: Reason[] = [];
  const perClassMin = profile.perClassMbps[s.area];
  const availabilityMin = profile.minUplinkAvailabilityPct;
  if (!f.hasUplink)
    reasons.push({
      code: 'no_uplink_registered',
      message: 'no uplink device registered for this school: its availability is not measured',
    });
  else if (!f.monitored)
    reasons.push({ code: 'uplink_not_monitored', message: 'no uplink readings in teaching time' });
  else if (f.availability !== null && f.availability < availabilityMin)
    reasons.push({
      code: 'uplink_availability_low',
      message: `uplink up ${shown(f.availability, DIGITS.pct, availabilityMin)} % of teaching time (${f.up!.availB} of ${f.up!.teachingB} buckets), below ${availabilityMin} %`,
    });
  if (f.capacityMbps !== null && f.capacityMbps < profile.minUplinkMbps)
    reasons.push({
      code: 'uplink_capacity_low',
      message: `uplink ${f.capacityMbps} Mbps, below ${profile.minUplinkMbps} Mbps`,
    });
  if (f.perClass !== null && f.perClass < perClassMin)
    reasons.push({
      code: 'per_class_bandwidth_low',
      message: `${shown(f.perClass, DIGITS.mbps, perClassMin)} Mbps per class (${f.capacityMbps} Mbps ÷ ${s.classes} classes), below ${perClassMin} Mbps for ${s.area} schools`,
    });
  if (f.congested)
    reasons.push({
      code: 'uplink_congested',
      message: `95th-percentile utilisation at or above ${profile.congestionPct} % (${shown(f.busy!, DIGITS.pct, 5)} % of teaching time)`,
    });
  const lq = profile.linkQuality;
  if (f.linkQualityLow && lq) {
    const parts: string[] = [];
    if (f.lossOver)
      parts.push(
        `loss ${shown(f.lossPct!, DIGITS.pct, lq.maxLossPct)} % (${f.up!.probeLost} of ${f.up!.probeSent} probes), above ${lq.maxLossPct} %`,
      );
    if (f.qualityLowB * 100 > lq.maxShareOverPct * f.up!.reachB)
      parts.push(
        `RTT above ${lq.maxRttMs} ms or jitter above ${lq.maxJitterMs} ms on ${shown(f.qualityLow!, DIGITS.pct, lq.maxShareOverPct)} % of answered teaching time (${f.qualityLowB} of ${f.up!.reachB} buckets), above ${lq.maxShareOverPct} %`,
      );
    reasons.push({ code: 'link_quality_low', message: parts.join('; ') });
  }
  return reasons;
}

/** A school's 校校通 verdict. */
interface Xxt {
  /** null: not judged. */
  attained: boolean | null;
  reasons: Reason[];
  /** What the school's rooms carry instead of their own reasons when nothing of theirs was measured. */
  unmeasured: Reason | undefined;
}

/**
 * Judged on its uplink's reasons when measured. Not judged: no teaching day yet (a vacation), or teaching days
 * not rolled up yet. Judged and failed: no calendar at all — a school must not drop out of the statistics
 * because nobody entered its 校历.
 */
function judgeXxt(time: TeachingTime, uplinkReasons: Reason[]): Xxt {
  if (!time.cal) {
    const reasons: Reason[] = [{ code: 'no_calendar', message: 'no school calendar covers this school' }];
    return { attained: false, reasons, unmeasured: time.measured ? undefined : reasons[0] };
  }
  if (!time.measured) {
    const reasons: Reason[] = [
      time.calendarDays.length === 0
        ? {
            code: 'no_teaching_time',
            message: 'no teaching day in this period so far (vacation or holidays)',
          }
        : {
            code: 'not_rolled_up',
            message: `${time.calendarDays.length} teaching days in the period, none rolled up yet`,
          },
    ];
    return { attained: null, reasons, unmeasured: reasons[0] };
  }
  return { attained: uplinkReasons.length === 0, reasons: uplinkReasons, unmeasured: undefined };
}

// ---- 班班通, the audit, the school ------------------------------------------------------------------------------

/** Each class room of the school (classrooms.ts); nothing of theirs is judged when nothing was measured. */
function judgeClassrooms(
  s: School,
  reg: RegistryIndex,
  data: PeriodData,
  profile: Profile,
  time: TeachingTime,
  xxt: Xxt,
): ClassroomResult[] {
  const rooms = (reg.classroomsBySchool.get(s.id) ?? []).filter((c) => c.isClass);
  return rooms.map((room) =>
    xxt.unmeasured
      ? unmeasuredClassroom(room, reg, xxt.attained, xxt.unmeasured)
      : evaluateClassroom(room, reg, data, profile, time.teachingDays, time.weeks, xxt.attained!),
  );
}

/** The usage audit of the school's devices, network equipment left out. */
function auditDevices(
  s: School,
  reg: RegistryIndex,
  data: PeriodData,
  time: TeachingTime,
  idleDays: number,
): DeviceAudit[] {
  const { teachingDays, weeks } = time;
  const out: DeviceAudit[] = [];
  for (const d of reg.devicesBySchool.get(s.id) ?? []) {
    if (d.kind === 'router' || d.kind === 'switch' || d.kind === 'ap') continue;
    const key = entityKey(s.id, d.id);
    const u = data.usage.get(key);
    const exact = (b: number) => (b * (u?.bucketS ?? 0)) / 3600;
    const hours = (b: number) => roundHalfAway(exact(b), DIGITS.hours);
    const lastUsed = data.lastUsed.get(key) ?? null;
    // Rolled-up teaching days of its school since it was last used (since the look-back start if never).
    const idleTeachingDays = countAfter(time.allDays, lastUsed ?? undefined);
    out.push({
      id: d.id,
      school: s.id,
      classroom: d.classroom ?? null,
      kind: d.kind,
      batch: d.batch ?? null,
      purchasedOn: d.purchasedOn ?? null,
      poweredOnHours: hours(u?.onB ?? 0),
      inUseHours: hours(u?.useB ?? 0),
      onUnusedHours: hours(u?.unusedB ?? 0),
      leftOnHours: hours(u?.leftOnB ?? 0),
      periodsUsed: u?.periodsUsed ?? 0,
      usedHoursPerWeek: weeks > 0 ? rounded(exact(u?.useB ?? 0) / weeks, DIGITS.hours) : null,
      useBasis: periodUseBasis(u?.activityB ?? 0, u?.onlineB ?? 0),
      daysUsed: u?.usedDays ?? 0,
      teachingDays,
      usedDaysPct: rounded(share(u?.usedDays ?? 0, teachingDays), DIGITS.pct),
      lastUsed,
      idleTeachingDays,
      idle: idleTeachingDays >= idleDays,
    });
  }
  return out;
}

/** Teacher and student computers online on at least one teaching day in the period (生机比, 师机比). */
function workingComputers(s: School, reg: RegistryIndex, data: PeriodData): SchoolResult['computers'] {
  let teacherWorking = 0;
  let studentWorking = 0;
  for (const d of reg.devicesBySchool.get(s.id) ?? []) {
    const u = data.usage.get(entityKey(s.id, d.id));
    if (d.kind === 'teacher_pc' && (u?.onlineDays ?? 0) > 0) teacherWorking++;
    if (d.kind === 'student_pc' && (u?.onlineDays ?? 0) > 0) studentWorking++;
  }
  return { teacherWorking, studentWorking };
}

function schoolResult(
  s: School,
  region: string,
  time: TeachingTime,
  f: UplinkFigures,
  xxt: Xxt,
  rooms: readonly ClassroomResult[],
  computers: SchoolResult['computers'],
): SchoolResult {
  // Classes without a registered class room have no monitored equipment: counted, not attained.
  const counted = Math.max(s.classes, rooms.length);
  return {
    id: s.id,
    name: s.name,
    region,
    area: s.area,
    level: s.level,
    classes: s.classes,
    students: s.students,
    teachers: s.teachers,
    teachingDays: time.teachingDays,
    uplink: {
      monitored: f.monitored,
      availabilityPct: rounded(f.availability, DIGITS.pct),
      capacityMbps: f.capacityMbps,
      capacitySource: f.capacitySource,
      perClassMbps: rounded(f.perClass, DIGITS.mbps),
      busyPct: rounded(f.busy, DIGITS.pct),
      congested: f.congested,
      p95MaxDayPct: rounded(f.up?.p95MaxPct ?? null, DIGITS.pct),
      probedPct: rounded(f.up ? share(f.up.probeB, f.up.teachingB) : null, DIGITS.pct),
      reachablePct: rounded(f.up ? share(f.up.reachB, f.up.probeB) : null, DIGITS.pct),
      qualityLowPct: rounded(f.qualityLow, DIGITS.pct),
      lossPct: rounded(f.lossPct, DIGITS.pct),
      linkQualityLow: f.linkQualityLow,
    },
    xxt: { attained: xxt.attained, reasons: xxt.reasons },
    bbt: {
      classes: counted,
      attained: rooms.filter((r) => r.attained === true).length,
      unmonitored: counted - rooms.length,
    },
    computers,
  };
}
