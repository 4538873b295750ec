import type { Calendars } from '../calendar.js';
import { dateOf, dayNumber, localDate } from '../calendar.js';
import type { RegistryStore } from '../registry/store.js';
import type { DayCache } from './days.js';
import { coverage, evaluate } from './evaluate.js';
import {
  calendarsInUse,
  loadPeriod,
  lookbackDaysFor,
  type Period,
  type PeriodData,
  teachingBuckets,
} from './load.js';
import type { Profile } from './profiles.js';
import { type RollupRow, rollups } from './regions.js';
import type { Coverage, Evaluation } from './results.js';

/**
 * Periods and the cache in front of the computations. A period's rollup sums are loaded once (one InfluxQL
 * request, shared by concurrent callers) and kept for `ttlMs` or until a rollup run or a registry import makes
 * them stale; evaluations per profile and the regional rollups per scope are memoised on top. A request for a
 * city therefore costs a scope filter and a serialisation, not a database scan.
 */

/** The longest period a request may ask for. */
export const MAX_PERIOD_DAYS = 400;

/**
 * The dates a period may cover. InfluxDB stores times as int64 nanoseconds since 1970-01-01, which end at
 * 2262-04-11T23:47:16Z (and begin in 1677); a query past them is an error from InfluxDB, which would reach the
 * client as a 503. The bounds leave room for what the reports read around a period: the day after its end, and
 * up to 400 days before it for the look-back.
 */
export const PERIOD_MIN_DATE = '1970-01-01';
export const PERIOD_MAX_DATE = '2261-12-31';

const outside = (text: string) => ({
  ok: false as const,
  message: `${text}: outside ${PERIOD_MIN_DATE}..${PERIOD_MAX_DATE}, the dates a report can cover (InfluxDB stores times up to 2262-04-11)`,
});

/**
 * `2026-10-08` (a day), `2026-W41` (ISO week), `2026-10` (a month), `term:NAME` (the term of that name in the
 * calendars; the span of all of them when calendars differ) or `2026-09-01..2026-10-31`.
 */
export function parsePeriod(
  text: string,
  calendars: Calendars,
): { ok: true; period: Period } | { ok: false; message: string } {
  const valid = (d: string) => /^\d{4}-\d{2}-\d{2}$/.test(d) && dateOf(dayNumber(d)) === d;
  const range = /^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$/.exec(text);
  const isoWeek = /^(\d{4})-W(\d{2})$/.exec(text);
  const month = /^(\d{4})-(\d{2})$/.exec(text);
  let from: string;
  let to: string;
  if (range) [from, to] = [range[1]!, range[2]!];
  else if (/^\d{4}-\d{2}-\d{2}$/.test(text)) [from, to] = [text, text];
  else if (isoWeek) {
    // ISO 8601: week 1 is the week (Monday to Sunday) that holds 4 January.
    const mondayOfWeek1 = (year: number) => {
      const jan4 = dayNumber(`${year}-01-04`);
      return jan4 - ((((jan4 + 4) % 7) + 6) % 7); // (day + 4) % 7: 0 = Sunday, since 1970-01-01 was a Thursday
    };
    const year = +isoWeek[1]!;
    if (year < +PERIOD_MIN_DATE.slice(0, 4) || year > +PERIOD_MAX_DATE.slice(0, 4)) return outside(text);
    const start = mondayOfWeek1(year) + 7 * (+isoWeek[2]! - 1);
    if (+isoWeek[2]! < 1 || start >= mondayOfWeek1(year + 1))
      return { ok: false, message: `${text}: no such ISO week` };
    [from, to] = [dateOf(start), dateOf(start + 6)];
  } else if (month) {
    const mo = +month[2]!;
    if (mo < 1 || mo > 12) return { ok: false, message: `${text}: no such month` };
    from = `${month[1]}-${month[2]}-01`;
    to = dateOf(Date.UTC(+month[1]!, mo, 1) / 86_400_000 - 1);
  } else if (text.startsWith('term:')) {
    const name = text.slice(5);
    const terms = calendars.defs.flatMap((c) => c.terms ?? []).filter((t) => t.name === name);
    if (terms.length === 0) return { ok: false, message: `no term named "${name}" in the calendars` };
    from = terms.map((t) => t.start).sort()[0]!;
    to = terms
      .map((t) => t.end)
      .sort()
      .at(-1)!;
  } else {
    return {
      ok: false,
      message: 'must be YYYY-MM-DD, YYYY-Www, YYYY-MM, term:NAME or YYYY-MM-DD..YYYY-MM-DD',
    };
  }
  if (!valid(from) || !valid(to)) return { ok: false, message: `${text}: not a real date` };
  if (from < PERIOD_MIN_DATE || to > PERIOD_MAX_DATE) return outside(text);
  if (from > to) return { ok: false, message: `${text}: the period ends before it starts` };
  if (dayNumber(to) - dayNumber(from) + 1 > MAX_PERIOD_DAYS)
    return { ok: false, message: `${text}: longer than ${MAX_PERIOD_DAYS} days` };
  return { ok: true, period: { from, to } };
}

export interface ReportsDeps {
  days: DayCache;
  registry: RegistryStore;
  calendars: () => Calendars;
  /** How long a period's sums are reused before the day cache is asked again (it re-checks rollup markers). */
  ttlMs: number;
  now?: () => number;
}

export class Reports {
  private readonly periods = new Map<string, { atMs: number; data: Promise<PeriodData> }>();
  private readonly evaluations = new Map<string, Evaluation>();
  private readonly rollupMemo = new WeakMap<Evaluation, Map<string, RollupRow[]>>();
  private readonly coverageMemo = new WeakMap<Evaluation, Map<string, Coverage>>();
  private calendarsMemo?: { cals: Calendars; version: unknown; list: ReturnType<typeof calendarsInUse> };
  private readonly textMemo = new WeakMap<Evaluation, Map<string, string>>();
  private generation = 0;
  /** Period sums built (cache misses; days come from the day cache). */
  loads = 0;

  constructor(private readonly deps: ReportsDeps) {}

  /** Forget everything: a rollup wrote new sums (`dates`: the days it wrote, dropped from the day cache). */
  invalidate(dates?: readonly string[]): void {
    if (dates) for (const d of dates) this.deps.days.invalidate(d);
    else this.deps.days.invalidate();
    this.generation++;
    this.periods.clear();
    this.evaluations.clear();
  }

  private periodData(p: Period, lookbackDays: number): Promise<PeriodData> {
    const key = `${p.from}..${p.to}|${lookbackDays}|${this.deps.registry.version}`;
    const now = (this.deps.now ?? Date.now)();
    const hit = this.periods.get(key);
    if (hit && now - hit.atMs < this.deps.ttlMs) return hit.data;
    this.loads++;
    const data = loadPeriod(
      this.deps.days,
      p,
      lookbackDays,
      teachingBuckets(this.deps.registry.index, this.deps.calendars()),
    );
    // A failed load is not cached: the next request tries again.
    data.catch(() => this.periods.get(key)?.data === data && this.periods.delete(key));
    this.periods.set(key, { atMs: now, data });
    if (this.periods.size > 64) this.periods.delete(this.periods.keys().next().value!);
    return data;
  }

  async evaluation(p: Period, profile: Profile, idleDays?: number): Promise<Evaluation> {
    const today = localDate((this.deps.now ?? Date.now)());
    const reg = this.deps.registry.index;
    const cals = this.deps.calendars();
    // "Last used" looks back far enough for `idleDays` teaching days by every calendar in use (a vacation
    // in between does not shorten it): api/README.md#definitions.
    const lookbackDays = lookbackDaysFor(idleDays ?? profile.idleDays, {
      calendars: this.calendarsInUse(cals),
      to: p.to,
      today,
    });
    const data = await this.periodData(p, lookbackDays);
    const key = `${p.from}..${p.to}|${profile.id}|${idleDays ?? ''}|${today}|${this.deps.registry.version}|${this.generation}`;
    let ev = this.evaluations.get(key);
    // The evaluation is keyed on the loaded data too: a reload after the TTL evaluates afresh.
    if (!ev || ev.period !== data.period) {
      ev = evaluate(data, reg, cals, profile, { ...(idleDays ? { idleDays } : {}), today });
      this.evaluations.set(key, ev);
      if (this.evaluations.size > 128) this.evaluations.delete(this.evaluations.keys().next().value!);
    }
    return ev;
  }

  private calendarsInUse(cals: Calendars): ReturnType<typeof calendarsInUse> {
    const version = this.deps.registry.version;
    const m = this.calendarsMemo;
    if (m && m.cals === cals && m.version === version) return m.list;
    const list = calendarsInUse(this.deps.registry.index, cals);
    this.calendarsMemo = { cals, version, list };
    return list;
  }

  /** A value derived from an evaluation (a serialised response), computed once per key. */
  memo(ev: Evaluation, key: string, make: () => string): string {
    let m = this.textMemo.get(ev);
    if (!m) {
      m = new Map();
      this.textMemo.set(ev, m);
    }
    let v = m.get(key);
    if (v === undefined) {
      v = make();
      m.set(key, v);
    }
    return v;
  }

  /** Rollup coverage by the calendars of the schools in `scope` only (memoised per evaluation and scope). */
  coverage(ev: Evaluation, scope: string | undefined): Coverage {
    if (scope === undefined) return ev.coverage;
    let m = this.coverageMemo.get(ev);
    if (!m) {
      m = new Map();
      this.coverageMemo.set(ev, m);
    }
    let c = m.get(scope);
    if (!c) {
      c = coverage(ev, this.deps.registry.index, scope);
      m.set(scope, c);
    }
    return c;
  }

  rollups(ev: Evaluation, scope: string | undefined): RollupRow[] {
    let m = this.rollupMemo.get(ev);
    if (!m) {
      m = new Map();
      this.rollupMemo.set(ev, m);
    }
    const key = scope ?? '';
    let rows = m.get(key);
    if (!rows) {
      rows = rollups(ev, this.deps.registry.index, scope);
      m.set(key, rows);
    }
    return rows;
  }
}
