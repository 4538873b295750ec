import { localDate, localMidnightMs, weekdayOf } from '../common/calendar.js';
import { regionWithin } from '../contracts/ids.js';
import type { Maintenance } from './config.js';
import type { Alert } from './engine.js';
import type { Silence } from './state.js';

type Scope = {
  region?: string | undefined;
  school?: string | undefined;
  device?: string | undefined;
  rule?: string | undefined;
};

/**
 * Whether notifications about an alert are suppressed at `ms`: by a silence (API, one-off, by region, school,
 * device, rule) or a maintenance window (config, weekly, local time; `from` > `to` spans midnight). Pure: the
 * school's region path comes from the registry, the rest is arguments.
 */
export function silenced(
  a: Pick<Alert, 'school' | 'device' | 'rule'>,
  ms: number,
  schoolPath: string | undefined,
  silences: readonly Silence[],
  maintenance: readonly Maintenance[],
): boolean {
  const inRegion = (r: string) => schoolPath !== undefined && regionWithin(schoolPath, r);
  const match = (m: Scope) =>
    (!m.region || inRegion(m.region)) &&
    (!m.school || m.school === a.school) &&
    (!m.device || m.device === a.device) &&
    (!m.rule || m.rule === a.rule);
  if (silences.some((s) => s.startsAtMs <= ms && ms < s.endsAtMs && match(s))) return true;
  return maintenance.some(
    (w) =>
      inWindow(w, ms) &&
      (!w.regions || w.regions.some(inRegion)) &&
      (!w.schools || w.schools.includes(a.school)) &&
      (!w.rules || w.rules.includes(a.rule)),
  );
}

/** Whether `ms` (China time) falls in a weekly window: its weekday, from `from` up to (not including) `to`. */
export function inWindow(w: Pick<Maintenance, 'weekdays' | 'from' | 'to'>, ms: number): boolean {
  const date = localDate(ms);
  if (!w.weekdays.includes(weekdayOf(date))) return false;
  const minute = Math.floor((ms - localMidnightMs(date)) / 60_000);
  const from = minutes(w.from);
  const to = minutes(w.to);
  return from < to ? from <= minute && minute < to : minute >= from || minute < to; // 22:00-06:00 spans midnight
}

const minutes = (hm: string) => +hm.slice(0, 2) * 60 + +hm.slice(3, 5);
