import { describe, expect, it } from 'vitest';
import {
  appKey,
  DEFAULT_TEACHING_APPS,
  DEFAULT_TEACHING_SITE_NAMES,
  DEFAULT_USAGE_JUDGE,
  NATIONAL_PLATFORM,
  UsageJudge,
  type UseJudgement,
} from '../../../common/figures/usage.js';
import type { Activity, DisplayHealth, Telemetry } from '../../../contracts/messages.js';

/** A reading as an agent sends it: version, display and activity as given. */
function reading(
  v: 1 | 2,
  display: Partial<DisplayHealth> | undefined,
  more: { activity?: Activity; inUse?: boolean } = {},
): Telemetry {
  return {
    v,
    ts: 1_788_000_000_000,
    seq: 1,
    kind: 'panel',
    ...(display ? { display: { source: 'pjlink', power: 'on', ...display } } : {}),
    ...more,
  };
}
const act = (a: Omit<Activity, 'source'>): { activity: Activity } => ({
  activity: { source: 'windows', ...a },
});
const j = (
  on: boolean | undefined,
  inUse: boolean | undefined,
  active: boolean | undefined,
  teachingApp: boolean | undefined,
  basis: 'activity' | 'power',
): UseJudgement => ({ on, inUse, active, teachingApp, basis });

describe('the rule of use (docs/usage.md, "The rule")', () => {
  const judge = new UsageJudge({
    activeWithinS: 300,
    teachingIdleWithinS: 1_200,
    teachingApps: DEFAULT_TEACHING_APPS,
    teachingSites: DEFAULT_TEACHING_SITE_NAMES,
  });

  // [what, reading, judgement]: every line of the rule changes one outcome.
  const cases: [string, Telemetry, UseJudgement | undefined][] = [
    // v2 with activity: on ∧ (active ∨ (teaching app ∧ input within teachingIdleWithinS))
    [
      'v2 on, input 10 s ago',
      reading(2, { input: '31' }, act({ idleS: 10 })),
      j(true, true, true, false, 'activity'),
    ],
    [
      'v2 on, input exactly activeWithinS ago',
      reading(2, {}, act({ idleS: 300 })),
      j(true, true, true, false, 'activity'),
    ],
    [
      'v2 on, input 301 s ago: on but unused',
      reading(2, { input: '31' }, act({ idleS: 301 })),
      j(true, false, false, false, 'activity'),
    ],
    [
      'v2 on, no input for 15 minutes but EasiNote in front: a lesson shown',
      reading(2, {}, act({ idleS: 900, foreground: 'EasiNote.exe' })),
      j(true, true, false, true, 'activity'),
    ],
    [
      'v2 teaching app, input exactly teachingIdleWithinS ago',
      reading(2, {}, act({ idleS: 1_200, foreground: 'EasiNote.exe' })),
      j(true, true, false, true, 'activity'),
    ],
    [
      'v2 teaching app, input one second longer ago: booted into EasiNote and left alone',
      reading(2, {}, act({ idleS: 1_201, foreground: 'EasiNote.exe' })),
      j(true, false, false, true, 'activity'),
    ],
    [
      'v2 teaching app, no idle time read: no evidence of a person, judged by power',
      reading(2, {}, act({ foreground: 'EasiNote.exe' })),
      j(true, false, undefined, undefined, 'power'),
    ],
    [
      'v2 no idle time read, on with an input: judged by power, as a v1 agent',
      reading(2, { input: '31' }, act({ screenOn: true })),
      j(true, true, undefined, undefined, 'power'),
    ],
    [
      'v2 teaching app matched case-insensitively',
      reading(2, {}, act({ idleS: 1_000, foreground: 'powerpnt.exe' })),
      j(true, true, false, true, 'activity'),
    ],
    [
      'v2 a Linux `wpp` matches wpp.exe',
      reading(2, {}, act({ idleS: 1_000, foreground: 'wpp' })),
      j(true, true, false, true, 'activity'),
    ],
    [
      'v2 idle with a browser in front: not teaching by itself',
      reading(2, {}, act({ idleS: 3_600, foreground: 'chrome.exe' })),
      j(true, false, false, false, 'activity'),
    ],
    [
      'v2 idle with a teaching site in front',
      reading(2, {}, act({ idleS: 1_000, foreground: 'chrome.exe', teachingSite: NATIONAL_PLATFORM })),
      j(true, true, false, true, 'activity'),
    ],
    [
      "v2 a site name not on the collector's list: a PC's own pattern counts for nothing",
      reading(2, {}, act({ idleS: 1_000, foreground: 'chrome.exe', teachingSite: '智慧中小学' })),
      j(true, false, false, false, 'activity'),
    ],
    [
      'v2 a teaching site left in front for an hour',
      reading(2, {}, act({ idleS: 3_600, foreground: 'chrome.exe', teachingSite: NATIONAL_PLATFORM })),
      j(true, false, false, true, 'activity'),
    ],
    [
      'v2 display off, input now: not in use',
      reading(2, { power: 'off' }, act({ idleS: 0, foreground: 'EasiNote.exe' })),
      j(false, false, true, true, 'activity'),
    ],
    [
      'v2 display warming up counts as on',
      reading(2, { power: 'warming' }, act({ idleS: 5 })),
      j(true, true, true, false, 'activity'),
    ],
    [
      'v2 display cooling is off',
      reading(2, { power: 'cooling' }, act({ idleS: 5 })),
      j(false, false, true, false, 'activity'),
    ],
    [
      'v2 display power unknown is not on',
      reading(2, { power: 'unknown' }, act({ idleS: 5 })),
      j(false, false, true, false, 'activity'),
    ],
    [
      'v2 no idle time read (nobody logged on), no input selected: judged by power',
      reading(2, {}, act({})),
      j(true, false, undefined, undefined, 'power'),
    ],
    [
      'v2 nobody logged on at the computer, the panel on with an input: not in use, by activity',
      reading(2, { input: '31' }, act({ loggedOn: false })),
      j(true, false, false, false, 'activity'),
    ],
    [
      'v2 PJLink unreachable (power unknown), someone at the PC: not on, so not in use',
      reading(2, { power: 'unknown' }, act({ idleS: 2, screenOn: true })),
      j(false, false, true, false, 'activity'),
    ],
    // A teacher PC without a display source: on from its screen.
    [
      'v2 PC, screen on, input now',
      reading(2, undefined, act({ idleS: 3, screenOn: true })),
      j(true, true, true, false, 'activity'),
    ],
    [
      'v2 PC, screen blanked, input now',
      reading(2, undefined, act({ idleS: 3, screenOn: false })),
      j(false, false, true, false, 'activity'),
    ],
    [
      'v2 PC, screen state unknown: reporting, so on',
      reading(2, undefined, act({ idleS: 900 })),
      j(true, false, false, false, 'activity'),
    ],
    [
      'v2 the display decides over the screen',
      reading(2, { power: 'off' }, act({ idleS: 3, screenOn: true })),
      j(false, false, true, false, 'activity'),
    ],
    // v2 without activity: as v1 judged it; v2's inUse is not read.
    [
      'v2 without activity: on with an input',
      reading(2, { input: '31' }),
      j(true, true, undefined, undefined, 'power'),
    ],
    [
      'v2 without activity: on, no input',
      reading(2, {}, { inUse: true }),
      j(true, false, undefined, undefined, 'power'),
    ],
    ['v2 without activity or display: nothing to judge', reading(2, undefined, { inUse: true }), undefined],
    // v1: its inUse, basis power.
    [
      'v1 inUse true',
      reading(1, { input: '31' }, { inUse: true }),
      j(true, true, undefined, undefined, 'power'),
    ],
    [
      'v1 inUse false though on with an input',
      reading(1, { input: '31' }, { inUse: false }),
      j(true, false, undefined, undefined, 'power'),
    ],
    [
      'v1 inUse true with the display off is not use',
      reading(1, { power: 'off' }, { inUse: true }),
      j(false, false, undefined, undefined, 'power'),
    ],
    [
      'v1 inUse without a display: a computer in use is on',
      reading(1, undefined, { inUse: true }),
      j(true, true, undefined, undefined, 'power'),
    ],
    [
      'v1 not in use, without a display: on not known',
      reading(1, undefined, { inUse: false }),
      j(undefined, false, undefined, undefined, 'power'),
    ],
    [
      'v1 without inUse: on with an input',
      reading(1, { input: '31' }),
      j(true, true, undefined, undefined, 'power'),
    ],
    [
      'v1 activity is not read',
      reading(1, { power: 'off' }, { inUse: false, ...act({ idleS: 1 }) }),
      j(false, false, undefined, undefined, 'power'),
    ],
    ['v1 host health only', reading(1, undefined), undefined],
  ];
  it.each(cases)('%s', (_what, m, expected) => {
    expect(judge.judge(m)).toEqual(expected);
  });

  it('in use never without on, whatever the reading (the rollup counts in-use buckets among on ones)', () => {
    for (const [what, m] of cases) {
      const r = judge.judge(m);
      if (r?.inUse) expect(r.on, what).toBe(true);
    }
  });

  it("a display device's own screen state unknown is not on: only a computer that reports is on", () => {
    const m = reading(2, undefined, act({ idleS: 3 }));
    expect(judge.judge(m, 'teacher_pc')).toEqual(j(true, true, true, false, 'activity'));
    expect(judge.judge(m)).toEqual(j(true, true, true, false, 'activity'));
    for (const kind of ['panel', 'whiteboard', 'projector'])
      expect(judge.judge(m, kind), kind).toEqual(j(undefined, false, true, false, 'activity'));
    expect(judge.judge(reading(2, undefined, act({ idleS: 3, screenOn: true })), 'panel')).toEqual(
      j(true, true, true, false, 'activity'),
    );
  });

  it('takes activeWithinS and the teaching applications from the configuration', () => {
    const strict = new UsageJudge({
      activeWithinS: 60,
      teachingIdleWithinS: 1_000,
      teachingApps: ['MyBoard.EXE'],
      teachingSites: ['之江汇教育广场'],
    });
    expect(strict.judge(reading(2, {}, act({ idleS: 120 })))?.inUse).toBe(false);
    expect(strict.judge(reading(2, {}, act({ idleS: 60 })))?.inUse).toBe(true);
    expect(strict.judge(reading(2, {}, act({ idleS: 999, foreground: 'myboard.exe' })))?.inUse).toBe(true);
    expect(strict.judge(reading(2, {}, act({ idleS: 1_001, foreground: 'myboard.exe' })))?.inUse).toBe(false);
    // The configured list replaces the defaults.
    expect(strict.judge(reading(2, {}, act({ idleS: 999, foreground: 'EasiNote.exe' })))?.inUse).toBe(false);
    expect(strict.judge(reading(2, {}, act({ idleS: 999, teachingSite: '之江汇教育广场' })))?.inUse).toBe(
      true,
    );
    expect(strict.judge(reading(2, {}, act({ idleS: 999, teachingSite: NATIONAL_PLATFORM })))?.inUse).toBe(
      false,
    );
    expect(DEFAULT_USAGE_JUDGE.rule.activeWithinS).toBe(300);
    expect(DEFAULT_USAGE_JUDGE.rule.teachingIdleWithinS).toBe(1_200);
  });

  it('compares executable names without case and without .exe, nothing more', () => {
    expect(appKey('POWERPNT.EXE')).toBe('powerpnt');
    expect(appKey('wpp')).toBe('wpp');
    expect(DEFAULT_USAGE_JUDGE.isTeachingApp('EASINOTE.EXE')).toBe(true);
    expect(DEFAULT_USAGE_JUDGE.isTeachingApp('EasiNote.exe.exe')).toBe(false);
    expect(DEFAULT_USAGE_JUDGE.isTeachingApp('xEasiNote.exe')).toBe(false);
    expect(DEFAULT_USAGE_JUDGE.isTeachingApp('constructor')).toBe(false);
    expect(DEFAULT_USAGE_JUDGE.isTeachingApp(undefined)).toBe(false);
  });
});
