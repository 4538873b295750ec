import { describe, expect, it } from 'vitest';
import { Calendar, calendarSchema } from '../../common/calendar.js';
import { DEFAULT_USAGE_JUDGE } from '../../common/figures/usage.js';
import { chineseNumeral, historyPoints, planCity, roomActivity } from '../../dev/city.js';

/**
 * The simulated city names every school once: a list, a report or an alert naming 淳安县汾口中心小学 must mean one
 * school. Checked at the quickstart's sizes (its default 36 schools, the six of tests/e2e/quickstart.test.ts) and
 * at a city of 1,600 schools, the size the domain's figures give a city.
 */
describe('the simulated city (dev/city.ts)', () => {
  for (const schools of [6, 36, 600, 1_600]) {
    it(`gives each of ${schools} schools its own name, the same every time`, () => {
      const plan = planCity({ schools, classrooms: 6, today: '2026-12-03' });
      const names = plan.schools.map((s) => s.name);
      expect(names).toHaveLength(schools);
      const twice = names.filter((n, i) => names.indexOf(n) !== i);
      expect(twice).toEqual([]);
      expect(new Set(plan.registry.schools.map((s) => s.name)).size).toBe(schools);
      expect(new Set(plan.schools.map((s) => s.id)).size).toBe(schools);
      // Deterministic: another plan of the same size (on another day) names them alike.
      expect(planCity({ schools, classrooms: 6, today: '2027-03-01' }).schools.map((s) => s.name)).toEqual(
        names,
      );
    });
  }

  it('names them as Chinese schools are named: the town, then 中心小学, 第二小学…, or a campus', () => {
    const names = planCity({ schools: 36, classrooms: 6 }).schools.map((s) => s.name);
    // The first schools keep their names (the congested school is 淳安县's first: the quickstart prints it).
    expect(names.slice(0, 3)).toEqual(['西湖区文新小学', '余杭区仁和中心小学', '淳安县汾口中心小学']);
    // The two that were doubled (issue #15): the second school of each town is its 第二小学.
    expect(names.filter((n) => n.startsWith('淳安县汾口'))).toEqual([
      '淳安县汾口中心小学',
      '淳安县汾口第二小学',
    ]);
    expect(names.filter((n) => n.startsWith('淳安县梓桐'))).toEqual([
      '淳安县梓桐中心小学',
      '淳安县梓桐第二小学',
    ]);
    expect(names).toContain('西湖区文新小学 2 校区');
    for (const n of names)
      expect(n).toMatch(/^(西湖区|余杭区|淳安县)\p{Script=Han}+(小学|中学)( \d+ 校区)?$/u);
  });

  it('writes numbers in Chinese numerals', () => {
    const cases: [number, string][] = [
      [2, '二'],
      [10, '十'],
      [12, '十二'],
      [20, '二十'],
      [51, '五十一'],
      [100, '一百'],
      [105, '一百零五'],
      [110, '一百一十'],
      [999, '九百九十九'],
    ];
    for (const [n, text] of cases) expect(chineseNumeral(n), String(n)).toBe(text);
    expect(() => chineseNumeral(0)).toThrow(RangeError);
  });

  it('--class-all-day: a calendar in class at every hour of every day (a valid calendar, 16 periods a day)', () => {
    const plan = planCity({ schools: 6, classrooms: 2, today: '2026-12-03', classAllDay: true });
    const cal = new Calendar(calendarSchema.parse(plan.calendar));
    // Sunday 03:00, Thursday 23:59:59, Saturday noon, and the instant a period ends and the next begins.
    for (const at of [
      '2026-11-29T03:00:00',
      '2026-12-03T23:59:59',
      '2026-12-05T12:00:00',
      '2026-12-03T01:30:00',
    ])
      expect(cal.isTeachingTime(Date.parse(`${at}+08:00`)), at).toBe(true);
    expect(cal.day('2026-11-29').periods).toHaveLength(16);
    // The ordinary city: weekdays only, none in the evening.
    const ordinary = new Calendar(planCity({ schools: 6, classrooms: 2, today: '2026-12-03' }).calendar);
    expect(ordinary.isTeachingTime(Date.parse('2026-12-03T20:00:00+08:00'))).toBe(false);
    expect(ordinary.day('2026-11-29').kind).toBe('weekend');
  });

  it("writes the whiteboards' history from the activity their live agents read: on but unused in about one slot in five", () => {
    const plan = planCity({ schools: 6, classrooms: 6, today: '2026-12-03' });
    const points = historyPoints(plan, '2026-11-30', '2026-12-02', Date.parse('2026-12-03T00:00:00+08:00'));
    const boards = points.filter((p) => p.measurement === 'display');
    const rooms = new Map(plan.schools.flatMap((s) => s.rooms.map((r) => [r.device, { s, r }])));
    let onUnused = 0;
    let used = 0;
    for (const p of boards) {
      const { s, r } = rooms.get(p.tags.device!)!;
      const a = roomActivity(s, r).readSync(p.ts);
      // Only a teaching application's name is stored (the desktop, explorer.exe, is not).
      const foreground = DEFAULT_USAGE_JUDGE.isTeachingApp(a.foreground) ? a.foreground : undefined;
      expect(p.fields).toMatchObject({ idle_s: a.idleS, foreground, use_basis: 'activity' });
      if (p.fields.on === 1 && p.fields.in_use === 0) onUnused++;
      if (p.fields.in_use === 1) used++;
    }
    expect(onUnused).toBeGreaterThan(0.1 * (onUnused + used));
    expect(onUnused).toBeLessThan(0.3 * (onUnused + used));
  });
});
