import { describe, expect, it } from 'vitest';
import { Calendars } from '../../../common/calendar.js';
import { parsePeriod } from '../../../common/figures/reports.js';
import { CITY_CALENDAR } from '../../helpers/city.js';

const cals = new Calendars([
  CITY_CALENDAR,
  {
    ...CITY_CALENDAR,
    id: 'later',
    terms: [{ name: '2026—2027 学年第一学期', start: '2026-09-07', end: '2027-01-29' }],
  },
]);
const p = (s: string) => parsePeriod(s, cals);

describe('periods', () => {
  it('reads days, ISO weeks, months, ranges and terms', () => {
    expect(p('2026-10-08')).toEqual({ ok: true, period: { from: '2026-10-08', to: '2026-10-08' } });
    expect(p('2026-W41')).toEqual({ ok: true, period: { from: '2026-10-05', to: '2026-10-11' } });
    expect(p('2026-W01')).toEqual({ ok: true, period: { from: '2025-12-29', to: '2026-01-04' } }); // week 1 holds 4 January
    expect(p('2026-W53')).toEqual({ ok: true, period: { from: '2026-12-28', to: '2027-01-03' } }); // 2026 starts on a Thursday
    expect(p('2026-02')).toEqual({ ok: true, period: { from: '2026-02-01', to: '2026-02-28' } });
    expect(p('2028-02')).toEqual({ ok: true, period: { from: '2028-02-01', to: '2028-02-29' } });
    expect(p('2026-09-01..2026-10-31')).toEqual({
      ok: true,
      period: { from: '2026-09-01', to: '2026-10-31' },
    });
    // Two calendars name the same term with different dates: the span of both.
    expect(p('term:2026—2027 学年第一学期')).toEqual({
      ok: true,
      period: { from: '2026-09-01', to: '2027-01-29' },
    });
  });

  it('refuses what is not a period, saying why', () => {
    expect(p('2025-W53')).toMatchObject({ ok: false, message: /no such ISO week/ });
    expect(p('2026-00')).toMatchObject({ ok: false, message: /no such month/ });
    expect(p('2026-02-29')).toMatchObject({ ok: false, message: /not a real date/ });
    expect(p('2026-01-01..2027-12-31')).toMatchObject({ ok: false, message: /longer than 400 days/ });
    expect(p('term:夏令营')).toMatchObject({ ok: false, message: /no term named/ });
    expect(p('last week')).toMatchObject({ ok: false, message: /must be YYYY-MM-DD/ });
    // InfluxDB stores times up to 2262-04-11: a period must end by 2261-12-31 and start no earlier than 1970.
    for (const outside of [
      '2262-01-01',
      '2300-01',
      '2261-W53',
      '2261-12-31..2262-01-01',
      '1969-12-31',
      '1969-W52',
    ])
      expect(p(outside)).toMatchObject({ ok: false, message: /outside 1970-01-01\.\.2261-12-31/ });
    expect(p('2261-12-31')).toEqual({ ok: true, period: { from: '2261-12-31', to: '2261-12-31' } });
    expect(p('1970-01-01')).toEqual({ ok: true, period: { from: '1970-01-01', to: '1970-01-01' } });
  });
});
