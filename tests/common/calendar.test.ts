import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Calendars, calendarsSchema, localDate, weekdayOf } from '../../common/calendar.js';
import { loadConfig } from '../../common/config.js';

const EXAMPLE = new URL('../../deploy/examples/calendar-2026-2027.yaml', import.meta.url).pathname;
const fileSchema = z.strictObject({ calendars: calendarsSchema });
const load = (file: string) => new Calendars(loadConfig(fileSchema, { file, env: {} }).calendars);

const PROVINCE_SCHOOL = ['3301080001', '330000/330100/330108'] as const; // 滨江区: the province's calendar
const XIHU_SCHOOL = ['3301060001', '330000/330100/330106'] as const; // 西湖区: the county's calendar
const ZHUANTANG = ['3301060002', '330000/330100/330106'] as const; // its own timetable

describe('school calendar (the 2026–2027 example)', () => {
  const cals = load(EXAMPLE);
  const province = cals.forSchool(...PROVINCE_SCHOOL)!;
  const xihu = cals.forSchool(...XIHU_SCHOOL)!;
  const zhuantang = cals.forSchool(...ZHUANTANG)!;

  it('chooses the calendar: listed school, then the deepest region, else none', () => {
    expect(province.def.id).toBe('zj-2026-2027');
    expect(xihu.def.id).toBe('xihu-2026-2027');
    expect(zhuantang.def.id).toBe('zhuantang-2026-2027');
    expect(cals.forSchool('4401000001', '440000/440100/440106')).toBeUndefined();
  });

  it('knows teaching days, holidays, 调休, weekends and vacations', () => {
    const kind = (d: string) => province.day(d).kind;
    expect(kind('2026-09-01')).toBe('teaching'); // first day of term, a Tuesday
    expect(kind('2026-08-31')).toBe('vacation'); // 暑假
    expect(kind('2026-09-19')).toBe('weekend');
    expect(province.day('2026-09-20')).toMatchObject({ kind: 'teaching', timetable: 'wed' }); // Sunday, 国庆节调休
    expect(province.day('2026-09-25')).toMatchObject({ kind: 'holiday', name: '中秋节' }); // a Friday
    expect(kind('2026-10-05')).toBe('holiday');
    expect(province.day('2026-10-10')).toMatchObject({ kind: 'teaching', timetable: 'thu' }); // Saturday, 调休
    expect(kind('2026-10-11')).toBe('weekend');
    expect(kind('2027-02-01')).toBe('vacation'); // 寒假
    expect(weekdayOf('2026-09-20')).toBe('sun');
  });

  it('counts September 2026 by hand: 22 weekdays − 中秋 Friday + the 调休 Sunday = 22 teaching days', () => {
    expect(province.teachingDays('2026-09-01', '2026-09-30')).toHaveLength(22);
  });

  it('gives class periods as UTC windows (China Standard Time, UTC+8)', () => {
    const tue = province.day('2026-09-01');
    expect(tue.periods).toHaveLength(7);
    expect(new Date(tue.periods[0]!.startMs).toISOString()).toBe('2026-09-01T00:00:00.000Z'); // 08:00 CST
    expect(new Date(tue.periods[6]!.endMs).toISOString()).toBe('2026-09-01T07:50:00.000Z'); // 15:50 CST
    expect(province.day('2026-09-04').periods).toHaveLength(6); // Friday
    expect(province.isTeachingTime(Date.parse('2026-09-01T08:10:00+08:00'))).toBe(true);
    expect(province.isTeachingTime(Date.parse('2026-09-01T09:40:00+08:00'))).toBe(false); // break
    expect(province.isTeachingTime(Date.parse('2026-09-26T08:10:00+08:00'))).toBe(false); // holiday
    expect(localDate(Date.parse('2026-09-01T23:30:00+08:00'))).toBe('2026-09-01');
    expect(province.daysPerWeek).toBe(5);
  });

  it('counts class time across breaks, evenings and holidays (an alert grace that pauses in breaks)', () => {
    const at = (local: string) => Date.parse(`${local}+08:00`);
    const cst = (ms: number) => new Date(ms + 8 * 3_600_000).toISOString().slice(0, 16);
    const p = province.day('2026-09-01').periods.map((x) => [cst(x.startMs), cst(x.endMs)]);
    expect(p.slice(0, 2)).toEqual([
      ['2026-09-01T08:00', '2026-09-01T08:40'],
      ['2026-09-01T08:50', '2026-09-01T09:30'],
    ]);
    // 5 minutes of the first period, the break, 5 of the second.
    expect(cst(province.teachingDeadline(at('2026-09-01T08:35'), 600_000))).toBe('2026-09-01T08:55');
    // Starting in the break: from the next period.
    expect(cst(province.teachingDeadline(at('2026-09-01T08:42'), 600_000))).toBe('2026-09-01T09:00');
    // Running out exactly at a bell: at the start of the next period (class time is [start, end)).
    expect(cst(province.teachingDeadline(at('2026-09-01T08:30'), 600_000))).toBe('2026-09-01T08:50');
    // Thursday 24 September's last period, then 中秋 Friday and the weekend: Monday's first period.
    const lastThu = province.day('2026-09-24').periods.at(-1)!;
    expect(cst(province.teachingDeadline(lastThu.endMs - 300_000, 600_000))).toBe('2026-09-28T08:05');
    // A calendar with no class within the bound: never.
    expect(province.teachingDeadline(at('2026-07-10T08:00'), 600_000, 20)).toBe(Number.POSITIVE_INFINITY);
  });

  it('applies overrides: a county term, a school timetable, both inheriting the holidays', () => {
    expect(province.day('2027-02-22').kind).toBe('teaching');
    expect(xihu.day('2027-02-22').kind).toBe('vacation'); // the county starts a week later
    expect(xihu.day('2026-10-05').kind).toBe('holiday');
    expect(new Date(zhuantang.day('2026-09-01').periods[0]!.startMs).toISOString()).toBe(
      '2026-08-31T23:50:00.000Z',
    );
    expect(zhuantang.day('2027-02-22').kind).toBe('vacation'); // inherits the county's terms
    expect(zhuantang.day('2026-10-10').kind).toBe('teaching'); // and the province's 调休
  });
});

describe('calendar validation', () => {
  /** Loading `yaml` from a file of its own, removed afterwards. */
  const tryLoad = (yaml: string) => () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfm-cal-'));
    try {
      writeFileSync(join(dir, 'cal.yaml'), yaml);
      return load(join(dir, 'cal.yaml'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('ends a period at midnight with 24:00: class up to the last millisecond of the day', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfm-cal-'));
    try {
      const file = join(dir, 'c.yaml');
      writeFileSync(
        file,
        'calendars: [{id: night, regions: ["330000"], terms: [{name: t, start: 2026-09-01, end: 2026-12-31}], periods: {tue: [00:00-12:00, 12:00-24:00]}}]\n',
      );
      const cal = load(file).forSchool(...PROVINCE_SCHOOL)!;
      const [, pm] = cal.day('2026-09-01').periods;
      expect(new Date(pm!.endMs).toISOString()).toBe('2026-09-01T16:00:00.000Z'); // 24:00 CST
      expect(cal.isTeachingTime(Date.parse('2026-09-01T23:59:59.999+08:00'))).toBe(true);
      expect(cal.isTeachingTime(Date.parse('2026-09-02T00:00:00+08:00'))).toBe(false); // a Wednesday: no periods
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the key of every kind of mistake', () => {
    const cases: [string, RegExp][] = [
      [
        'calendars: [{id: a, periods: {mon: [08:50-09:30, 08:00-08:40]}}]',
        /calendars\.0\.periods\.mon: .*order/,
      ],
      [
        'calendars: [{id: a, periods: {mon: [09:30-08:50]}}]',
        /calendars\.0\.periods\.mon\.0: ends before it starts/,
      ],
      [
        'calendars: [{id: a, terms: [{name: t, start: 2027-02-30, end: 2027-03-01}]}]',
        /terms\.0\.start: is not a real date/,
      ],
      [
        'calendars: [{id: a, terms: [{name: t, start: 2027-03-01, end: 2027-02-01}]}]',
        /terms\.0\.end: end is before start/,
      ],
      ['calendars: [{id: a, extends: b}]', /calendars\.0\.extends: no calendar b/],
      ['calendars: [{id: a, extends: b}, {id: b, extends: a}]', /extends loops/],
      ['calendars: [{id: a}, {id: a}]', /calendars\.1\.id: duplicate calendar id a/],
      ['calendars: [{id: a, makeUpDays: [{date: 2026-09-20, as: someday}]}]', /makeUpDays\.0\.as/],
      ['calendars: [{id: a, periods: {monday: []}}]', /calendars\.0\.periods/],
      ['calendars: [{id: a, colour: red}]', /unknown key\(s\) colour/],
      ['calendars: [{id: a, periods: {mon: [24:00-24:00]}}]', /periods\.mon\.0: must be HH:MM-HH:MM/],
      ['calendars: [{id: a, periods: {mon: [22:00-24:30]}}]', /periods\.mon\.0: must be HH:MM-HH:MM/],
    ];
    for (const [yaml, want] of cases) expect(tryLoad(yaml)).toThrow(want);
  });
});
