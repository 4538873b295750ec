import { z } from 'zod';
import { idSchema } from '../contracts/ids.js';

/**
 * School calendars: terms (everything outside a term is vacation — 寒假, 暑假), public holidays, make-up working
 * days (调休: a weekend day that is a school day, following a named weekday's timetable) and the class periods
 * of each weekday. A calendar applies to regions (the most specific region wins) or to listed schools (which win
 * over any region); `extends` takes another calendar's fields and overrides some.
 *
 * Times are China Standard Time, UTC+8 all year (China has no daylight saving time since 1991), so a local date
 * maps to a fixed UTC window and no time-zone database is needed.
 */
export const CST_OFFSET_MS = 8 * 3_600_000;
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const dateSchema = z
  .string()
  .regex(DATE, { message: 'must be a date YYYY-MM-DD' })
  .refine((d) => !Number.isNaN(dayNumber(d)) && dateOf(dayNumber(d)) === d, {
    message: 'is not a real date',
  });

const rangeSchema = z
  .strictObject({ name: z.string().min(1).max(64), start: dateSchema, end: dateSchema })
  .refine((r) => r.start <= r.end, { message: 'end is before start', path: ['end'] });

/** `08:00-08:40`: one class period, local time; `24:00` ends one at midnight (`22:30-24:00`). */
const periodSchema = z
  .string()
  .regex(/^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$/, {
    message: 'must be HH:MM-HH:MM (24:00 for midnight at its end)',
  })
  .refine((p) => p.slice(0, 5) < p.slice(6), { message: 'ends before it starts' });

const dayPeriodsSchema = z
  .array(periodSchema)
  .max(16)
  .refine((ps) => ps.every((p, i) => i === 0 || ps[i - 1]!.slice(6) <= p.slice(0, 5)), {
    message: 'periods must be in order and must not overlap',
  });

export const calendarSchema = z.strictObject({
  id: idSchema,
  name: z.string().max(128).optional(),
  extends: idSchema.optional().describe('Another calendar whose fields this one starts from.'),
  regions: z.array(idSchema).optional().describe('Region ids whose schools use this calendar.'),
  schools: z.array(idSchema).optional().describe('Schools that use this calendar whatever their region.'),
  terms: z.array(rangeSchema).optional().describe('学期, inclusive dates; outside every term is vacation.'),
  holidays: z.array(rangeSchema).optional().describe('Public holidays and other days off, inclusive.'),
  makeUpDays: z
    .array(
      z.strictObject({
        date: dateSchema,
        as: z
          .enum(WEEKDAYS)
          .default('mon')
          .describe('Whose timetable the day follows (announced with the 调休).'),
        name: z.string().max(64).optional(),
      }),
    )
    .optional()
    .describe('调休: weekend days that are school days.'),
  periods: z
    .partialRecord(z.enum(WEEKDAYS), dayPeriodsSchema)
    .optional()
    .describe('Class periods per weekday (local time); a weekday without periods is not a school day.'),
  source: z.string().max(500).optional().describe('Where the dates come from (a notice, a bureau document).'),
});
export type CalendarDef = z.infer<typeof calendarSchema>;

export const calendarsSchema = z.array(calendarSchema).superRefine((list, ctx) => {
  const ids = new Map<string, number>();
  list.forEach((c, i) => {
    if (ids.has(c.id))
      ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate calendar id ${c.id}` });
    ids.set(c.id, i);
  });
  list.forEach((c, i) => {
    const seen = new Set([c.id]);
    for (let p = c.extends; p !== undefined; p = list[ids.get(p) ?? -1]?.extends) {
      if (!ids.has(p)) {
        ctx.addIssue({ code: 'custom', path: [i, 'extends'], message: `no calendar ${p}` });
        return;
      }
      if (seen.has(p)) {
        ctx.addIssue({ code: 'custom', path: [i, 'extends'], message: `extends loops through ${p}` });
        return;
      }
      seen.add(p);
    }
  });
});

/** Days since 1970-01-01 of a `YYYY-MM-DD` date. */
export function dayNumber(date: string): number {
  return Date.UTC(+date.slice(0, 4), +date.slice(5, 7) - 1, +date.slice(8, 10)) / 86_400_000;
}
let lastDay = Number.NaN;
let lastDate = '';
export function dateOf(day: number): string {
  // The collector asks for every reading's date: nearly always the day it asked before.
  if (day !== lastDay) {
    lastDate = new Date(day * 86_400_000).toISOString().slice(0, 10);
    lastDay = day;
  }
  return lastDate;
}
/** The local (UTC+8) date of an instant. */
export function localDate(ms: number): string {
  return dateOf(Math.floor((ms + CST_OFFSET_MS) / 86_400_000));
}
/** Local midnight of a date, as epoch ms. */
export function localMidnightMs(date: string): number {
  return dayNumber(date) * 86_400_000 - CST_OFFSET_MS;
}
export function weekdayOf(date: string): Weekday {
  return WEEKDAYS[(((dayNumber(date) + 4) % 7) + 7) % 7]!; // 1970-01-01 was a Thursday
}

export type DayKind = 'teaching' | 'vacation' | 'holiday' | 'weekend';
export interface DayInfo {
  date: string;
  kind: DayKind;
  /** The holiday's or term's name. */
  name?: string;
  /** Whose timetable a teaching day follows (its own weekday, or a make-up day's `as`). */
  timetable?: Weekday;
  /** Class periods as epoch-ms windows [start, end). */
  periods: { startMs: number; endMs: number }[];
}

/** A resolved calendar (its `extends` chain applied). */
export class Calendar {
  private readonly cache = new Map<string, DayInfo>();

  constructor(readonly def: CalendarDef) {}

  day(date: string): DayInfo {
    let info = this.cache.get(date);
    if (!info) {
      info = this.compute(date);
      if (this.cache.size > 4_000) this.cache.clear();
      this.cache.set(date, info);
    }
    return info;
  }

  private compute(date: string): DayInfo {
    const d = this.def;
    const term = d.terms?.find((t) => t.start <= date && date <= t.end);
    if (!term) return { date, kind: 'vacation', periods: [] };
    const holiday = d.holidays?.find((h) => h.start <= date && date <= h.end);
    if (holiday) return { date, kind: 'holiday', name: holiday.name, periods: [] };
    const makeUp = d.makeUpDays?.find((m) => m.date === date);
    const timetable = makeUp ? makeUp.as : weekdayOf(date);
    const periods = d.periods?.[timetable] ?? [];
    if (periods.length === 0) return { date, kind: 'weekend', periods: [] };
    const midnight = localMidnightMs(date);
    const at = (hhmm: string) => midnight + (+hhmm.slice(0, 2) * 60 + +hhmm.slice(3, 5)) * 60_000;
    return {
      date,
      kind: 'teaching',
      name: term.name,
      timetable,
      periods: periods.map((p) => ({ startMs: at(p.slice(0, 5)), endMs: at(p.slice(6)) })),
    };
  }

  /** Teaching days in [from, to] (inclusive dates). */
  teachingDays(from: string, to: string): DayInfo[] {
    const out: DayInfo[] = [];
    for (let n = dayNumber(from); n <= dayNumber(to); n++) {
      const info = this.day(dateOf(n));
      if (info.kind === 'teaching') out.push(info);
    }
    return out;
  }

  /** Whether an instant falls in a class period: what "during class" means for alerts. */
  isTeachingTime(ms: number): boolean {
    return this.day(localDate(ms)).periods.some((p) => p.startMs <= ms && ms < p.endMs);
  }

  /**
   * The instant at which `classMs` of class time have passed since `fromMs`: only class periods count; breaks,
   * evenings and days without class pause the count (an alert's grace that counts teaching time, not wall time).
   * Class time is [start, end): an amount that runs out exactly at a period's end runs out at the next period's
   * start. Infinity when not within `maxDays` days.
   */
  teachingDeadline(fromMs: number, classMs: number, maxDays = 400): number {
    let left = classMs;
    const first = dayNumber(localDate(fromMs));
    for (let n = first; n <= first + maxDays; n++)
      for (const p of this.day(dateOf(n)).periods) {
        const start = Math.max(p.startMs, fromMs);
        if (start >= p.endMs) continue;
        if (left < p.endMs - start) return start + left;
        left -= p.endMs - start;
      }
    return Number.POSITIVE_INFINITY;
  }

  /** School days per ordinary week (weekdays with periods): turns "per week" rules into per-day ones. */
  get daysPerWeek(): number {
    return WEEKDAYS.filter((w) => (this.def.periods?.[w]?.length ?? 0) > 0).length;
  }
}

/** Calendars by id, with `extends` applied, and the choice of calendar per school. */
export class Calendars {
  private readonly resolved = new Map<string, Calendar>();

  constructor(readonly defs: CalendarDef[]) {
    const byId = new Map(defs.map((d) => [d.id, d]));
    const flatten = (d: CalendarDef): CalendarDef => {
      if (!d.extends) return d;
      const base = flatten(byId.get(d.extends)!);
      const own = Object.fromEntries(Object.entries(d).filter(([, v]) => v !== undefined));
      // Scope fields are never inherited: a calendar applies where it says, not where its base does.
      return { ...base, regions: undefined, schools: undefined, ...own };
    };
    for (const d of defs) this.resolved.set(d.id, new Calendar(flatten(d)));
  }

  get(id: string): Calendar | undefined {
    return this.resolved.get(id);
  }

  /**
   * The calendar of a school: one listing the school, else the one whose region is deepest in the school's
   * region path (`330000/330100/330106`: a county calendar beats a province one), else undefined.
   */
  forSchool(schoolId: string, regionPath: string | undefined): Calendar | undefined {
    for (const c of this.resolved.values()) if (c.def.schools?.includes(schoolId)) return c;
    const path = regionPath?.split('/') ?? [];
    let best: Calendar | undefined;
    let depth = -1;
    for (const c of this.resolved.values()) {
      for (const r of c.def.regions ?? []) {
        const at = path.indexOf(r);
        if (at > depth) {
          depth = at;
          best = c;
        }
      }
    }
    return best;
  }
}
