import { type Classroom, type Device, DISPLAY_KINDS } from '../../contracts/registry.js';
import { entityKey } from '../registry/key.js';
import type { RegistryIndex } from '../registry/store.js';
import type { PeriodData, UsageSums } from './load.js';
import type { Profile } from './profiles.js';
import type { ClassroomResult, Reason } from './results.js';
import { DIGITS, rounded, roundHalfAway, share, shown } from './rounding.js';
import { periodUseBasis } from './usage.js';

/**
 * 班班通 per class room (api/README.md#computations): equipped, online on enough teaching days, healthy, used
 * enough, its school connected. `evaluate` (evaluate.ts) judges each class room of a school with one of these.
 */

/**
 * A class room of a school with nothing measured in the period: it carries its school's not-judged reason
 * (`no_teaching_time`, `not_rolled_up`, `no_calendar`) and no other — nothing about the room itself is known.
 * Judged like its school: not at all in a vacation, failed without a calendar.
 */
export function unmeasuredClassroom(
  room: Classroom,
  reg: RegistryIndex,
  schoolAttained: boolean | null,
  reason: Reason,
): ClassroomResult {
  const displays = displaysIn(room, reg);
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
    onHours: null,
    inUseHours: null,
    onUnusedHours: null,
    periodsUsed: null,
    usedHoursPerWeek: null,
    useBasis: null,
    leftOnHours: null,
  };
}

/** A class room of a school measured in the period, by its best display (schoolConnected: 校校通 attained). */
export function evaluateClassroom(
  room: Classroom,
  reg: RegistryIndex,
  data: PeriodData,
  profile: Profile,
  teachingDays: number,
  weeks: number,
  schoolConnected: boolean,
): ClassroomResult {
  const displays = displaysIn(room, reg);
  const reasons: Reason[] = [];
  // A classroom's figures are its best display's (two displays do not double its use).
  let onlineDays = 0;
  let periodsUsed = 0;
  let onlineB = 0;
  let faultyB = 0;
  // Its use: the best display's (most periods used, then most in use, then most on); left on: all of them.
  let best: UsageSums | undefined;
  let leftOnB = 0;
  let bucketS = 0;
  for (const d of displays) {
    const u = data.usage.get(entityKey(room.school, d.id));
    if (!u) continue;
    onlineDays = Math.max(onlineDays, u.onlineDays);
    periodsUsed = Math.max(periodsUsed, u.periodsUsed);
    if (u.onlineB > onlineB) {
      onlineB = u.onlineB;
      faultyB = u.faultyB;
    }
    leftOnB += u.leftOnB;
    bucketS = u.bucketS || bucketS;
    if (
      !best ||
      u.periodsUsed > best.periodsUsed ||
      (u.periodsUsed === best.periodsUsed &&
        (u.useB > best.useB || (u.useB === best.useB && u.onB > best.onB)))
    )
      best = u;
  }
  const exact = (b: number) => (b * bucketS) / 3600;
  const hours = (b: number | undefined) =>
    displays.length > 0 ? roundHalfAway(exact(b ?? 0), DIGITS.hours) : null;
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
    periodsUsedPerWeek: rounded(perWeek, DIGITS.periodsPerWeek),
    faultyPct: rounded(faulty, DIGITS.pct),
    onHours: hours(best?.onB),
    inUseHours: hours(best?.useB),
    onUnusedHours: hours(best?.unusedB),
    periodsUsed: equipped ? (best?.periodsUsed ?? 0) : null,
    usedHoursPerWeek: equipped && weeks > 0 ? rounded(exact(best?.useB ?? 0) / weeks, DIGITS.hours) : null,
    useBasis: best ? periodUseBasis(best.activityB, best.onlineB) : null,
    leftOnHours: hours(leftOnB),
  };
}

/** The teaching displays registered in a class room: what 班班通 measures it by. */
function displaysIn(room: Classroom, reg: RegistryIndex): Device[] {
  return reg
    .devicesIn(room.school, room.id)
    .filter((d) => (DISPLAY_KINDS as readonly string[]).includes(d.kind));
}
