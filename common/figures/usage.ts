import type { PERIOD_USE_BASES, USE_BASES } from '../../contracts/influx.js';
import type { Telemetry } from '../../contracts/messages.js';
import { DISPLAY_KINDS } from '../../contracts/registry.js';

/**
 * What counts as classroom use, per reading (docs/usage.md, "The rule"): the collector's one judgement for the
 * whole deployment, from the evidence an agent sends. Pure: the collector (collector/points.ts) stores what this
 * returns; the rollup and the reports count it.
 */

/**
 * Executables that put teaching in front of a class whether or not anyone touches the computer: a lesson shown,
 * a video played, a document camera live. Names as Windows reports them (`GetForegroundWindow` → process); X11's
 * `/proc/<pid>/comm` names of the same programs match too, since a trailing `.exe` is ignored. Only names whose
 * product is known; a bureau adds its own with `collector.usage.teachingApps`. A browser is not here: it counts
 * only through `activity.teachingSite`, matched on the computer against its window title.
 */
export const DEFAULT_TEACHING_APPS: readonly string[] = [
  // 希沃白板 5 (Seewo EasiNote 5): the courseware list and the lesson view are the same executable.
  'EasiNote.exe',
  // 希沃视频展台 (Seewo EasiCamera): the document camera on Seewo panels.
  'EasiCamera.exe',
  // Microsoft PowerPoint.
  'POWERPNT.EXE',
  // WPS 演示 (Kingsoft WPS Presentation); on Linux desktops (统信 UOS, 麒麟) its executable is `wpp` as well.
  'wpp.exe',
  // Windows Media Player, shipped with Windows.
  'wmplayer.exe',
  // Media Player (the new one, shipped with Windows 11).
  'Microsoft.Media.Player.exe',
  // 电影和电视 (Windows "Movies & TV"), shipped with Windows 10 and 11.
  'Video.UI.exe',
  // PotPlayer, the player most often installed on Chinese classroom PCs (32- and 64-bit builds).
  'PotPlayerMini.exe',
  'PotPlayerMini64.exe',
  // VLC media player.
  'vlc.exe',
];

/**
 * Teaching sites that count by default: the national platform for primary and secondary schools (国家中小学智慧教育
 * 平台), whose name the agents' default pattern reports (agents/sources/activity/sites.ts). A province adds its own
 * platform here (`collector.usage.teachingSites`) and in the agents' patterns.
 */
export const NATIONAL_PLATFORM = '国家中小学智慧教育平台';
export const DEFAULT_TEACHING_SITE_NAMES: readonly string[] = [NATIONAL_PLATFORM];

/** `collector.usage` as the rule needs it. */
export interface UsageRule {
  /** Input within this many seconds is activity (default 300: the last five minutes). */
  activeWithinS: number;
  /**
   * A teaching application or site in front counts only with input within this many seconds (default 1,200:
   * 20 minutes): a lesson shown or a video played needs no input for a while, but someone started it. A panel
   * that boots into its whiteboard software and is left alone is not in use.
   */
  teachingIdleWithinS: number;
  /** Executable names of teaching applications, as configured. */
  teachingApps: readonly string[];
  /**
   * Names of the teaching sites that count (`activity.teachingSite`): the agents match window titles against
   * their patterns, but only a name on this list counts, so a PC's configuration cannot make any page teaching.
   */
  teachingSites: readonly string[];
}

/** Why a reading's use was judged as it was: by activity evidence, or by the display's power alone. */
export type UseBasis = (typeof USE_BASES)[number];

/** One reading judged: each part, so the rollup and dashboards can count them apart. */
export interface UseJudgement {
  /** The display (or, without one, the computer's screen) is on; undefined: not known. */
  on: boolean | undefined;
  /** In use; undefined: the reading says nothing of use (a v1 reading without display or `inUse`). */
  inUse: boolean | undefined;
  /** Input within `activeWithinS`; undefined without activity evidence or without `idleS`. */
  active: boolean | undefined;
  /** A teaching application in the foreground, or a teaching site; undefined without activity evidence. */
  teachingApp: boolean | undefined;
  basis: UseBasis;
}

/** An executable name compared case-insensitively, without a trailing `.exe`: `POWERPNT.EXE` = `powerpnt`. */
export function appKey(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.exe') ? n.slice(0, -4) : n;
}

/** The rule's matcher, built once per configuration. */
export class UsageJudge {
  private readonly apps: ReadonlySet<string>;

  private readonly sites: ReadonlySet<string>;

  constructor(readonly rule: UsageRule) {
    this.apps = new Set(rule.teachingApps.map(appKey));
    this.sites = new Set(rule.teachingSites);
  }

  isTeachingApp(foreground: string | undefined): boolean {
    return foreground !== undefined && this.apps.has(appKey(foreground));
  }

  private isDisplayKind(kind: string | undefined): boolean {
    return kind !== undefined && (DISPLAY_KINDS as readonly string[]).includes(kind);
  }

  isTeachingSite(site: string | undefined): boolean {
    return site !== undefined && this.sites.has(site);
  }

  /**
   * Judges one telemetry reading (docs/usage.md, "The rule"); undefined when it carries no evidence of a
   * display or of use at all (a reading of host health only), which writes no `display` point. `kind`: the
   * device's registered kind, when known.
   *
   * - v2 with `activity` and an idle time: on = the display's power (on or warming up), or, without a display,
   *   the computer's screen — and when the agent cannot tell whether its screen is on, a computer that reports
   *   is on, but a display device (panel, whiteboard, projector: `DISPLAY_KINDS`) is not known to be on;
   *   in use = on ∧ (input within `activeWithinS` ∨ (a teaching application or listed site in the foreground ∧
   *   input within `teachingIdleWithinS`)).
   * - v2 with `activity.loggedOn` false: nobody logged on at the computer — not in use, basis `activity`.
   * - v2 with `activity` but no idle time (the source could not read input: a session-0 helper, a missing
   *   tool): no evidence of a person either way, so judged by power as below, basis `power`.
   * - v2 without `activity`: as v1 judged it, on with an input selected; basis `power`.
   * - v1: its `inUse` as sent (never more than its display's power allows: a display reported off is not in
   *   use; a computer in use is on), or, without one, on with an input selected; basis `power`. A v1 reading's
   *   `activity` is not read: its version says what its `inUse` means.
   */
  judge(m: Telemetry, kind?: string): UseJudgement | undefined {
    const d = m.display;
    const displayOn = d ? d.power === 'on' || d.power === 'warming' : undefined;
    const a = m.v === 2 ? m.activity : undefined;
    if (a?.loggedOn === false) {
      // Nobody logged on at the computer: nobody at it (the display may still be on).
      const on = displayOn ?? a.screenOn ?? (this.isDisplayKind(kind) ? undefined : true);
      return { on, inUse: false, active: false, teachingApp: false, basis: 'activity' };
    }
    if (a && a.idleS !== undefined) {
      const on = displayOn ?? a.screenOn ?? (this.isDisplayKind(kind) ? undefined : true);
      const active = a.idleS <= this.rule.activeWithinS;
      const teachingApp = this.isTeachingApp(a.foreground) || this.isTeachingSite(a.teachingSite);
      const attended = a.idleS <= this.rule.teachingIdleWithinS;
      return {
        on,
        inUse: on === true && (active || (teachingApp && attended)),
        active,
        teachingApp,
        basis: 'activity',
      };
    }
    if (m.v === 1 && m.inUse !== undefined)
      return {
        on: displayOn ?? (m.inUse ? true : undefined),
        inUse: displayOn === false ? false : m.inUse,
        active: undefined,
        teachingApp: undefined,
        basis: 'power',
      };
    if (!d) return undefined;
    return {
      on: displayOn,
      inUse: displayOn === true && d.input !== undefined,
      active: undefined,
      teachingApp: undefined,
      basis: 'power',
    };
  }
}

/** Seconds of input-free time still counted as activity by default (docs/usage.md). */
export const DEFAULT_ACTIVE_WITHIN_S = 300;

/**
 * Seconds of input-free time a teaching application or site in front still counts as use by default: 20
 * minutes. Longer would carry a lesson into the next class period: with the usual 10-minute break (课间), a
 * program left open after a lesson counts at most 10 minutes of the next 40–45-minute period — under the half
 * that makes a period used (api/README.md, Definitions 4) — where 45 minutes would make that period used. The
 * cost: a video played untouched for longer than 20 minutes counts only to its 20th minute.
 */
export const DEFAULT_TEACHING_IDLE_WITHIN_S = 1_200;

/** The rule with its defaults (what `collector.usage` defaults to). */
export const DEFAULT_USAGE_JUDGE = new UsageJudge({
  activeWithinS: DEFAULT_ACTIVE_WITHIN_S,
  teachingIdleWithinS: DEFAULT_TEACHING_IDLE_WITHIN_S,
  teachingApps: DEFAULT_TEACHING_APPS,
  teachingSites: DEFAULT_TEACHING_SITE_NAMES,
});

/**
 * What a device's (or classroom's) use figures over a period rest on: `activity` when every online teaching
 * bucket carried activity evidence, `power` when none did (a v1 agent, or no activity source), `mixed` in
 * between (an agent upgraded during the period, or an activity source that failed for a while); null when it
 * was never online in teaching time.
 */
export type PeriodUseBasis = (typeof PERIOD_USE_BASES)[number];

export function periodUseBasis(activityB: number, onlineB: number): PeriodUseBasis | null {
  if (onlineB <= 0) return activityB > 0 ? 'activity' : null;
  if (activityB <= 0) return 'power';
  return activityB >= onlineB ? 'activity' : 'mixed';
}
