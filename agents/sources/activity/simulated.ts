import { fnv1a } from '../../../common/hash.js';
import { type Activity, MAX_IDLE_S } from '../../../contracts/messages.js';
import { SIM_SLOT_MS, type SimulatedDisplayOptions, simulatedMoment } from '../simulated.js';
import type { ActivitySource } from './activity.js';

/**
 * The person at a simulated classroom's teaching computer (the OPS module inside the simulated panel), for
 * demos, the quickstart's city and tests: deterministic by seed and time, and in step with the simulated
 * display of the same options (../simulated.ts). In a slot the classroom is used, someone touches the board
 * every one to four minutes with a teaching application in the foreground — 希沃白板, PowerPoint, WPS 演示, or a
 * browser on the first teaching site; in the rest of the day the desktop is in front and the idle time grows
 * from the end of the last use. The screen is on while the display is: all of the teaching hours for a
 * `leftOn` panel, used or not — the panel on but unused that the audit must find.
 */
export interface SimulatedActivityOptions extends SimulatedDisplayOptions {
  /** The teaching site a browser in use shows (the first configured); none: no browser is used. */
  teachingSite?: string | undefined;
}

const APPS = ['EasiNote.exe', 'POWERPNT.EXE', 'wpp.exe', 'chrome.exe'] as const;
/** How far back the last use is looked for; beyond, the idle time is "at least this". */
const LOOKBACK_SLOTS = Math.ceil((7 * 86_400_000) / SIM_SLOT_MS);

export class SimulatedActivity implements ActivitySource {
  readonly kind = 'simulated';

  constructor(private readonly opts: SimulatedActivityOptions = {}) {}

  /** Seconds since the last input at `ms`: within a used slot, since the last touch; else since the last use. */
  private idleS(ms: number, slot: number, used: boolean): number {
    const seed = this.opts.seed;
    if (used) {
      const cycleS = 60 + (fnv1a(`${seed}:${slot}:cycle`) % 180);
      return Math.floor((ms - slot * SIM_SLOT_MS) / 1000) % cycleS;
    }
    // Never used (an idle panel) needs no looking back.
    for (let s = slot - 1; !this.opts.idle && s >= slot - LOOKBACK_SLOTS; s--) {
      if (simulatedMoment(this.opts, s * SIM_SLOT_MS).used) {
        return Math.min(MAX_IDLE_S, Math.floor((ms - (s + 1) * SIM_SLOT_MS) / 1000));
      }
    }
    return Math.min(MAX_IDLE_S, Math.floor((ms - (slot - LOOKBACK_SLOTS) * SIM_SLOT_MS) / 1000));
  }

  read(nowMs = Date.now()): Promise<Activity> {
    return Promise.resolve(this.readSync(nowMs));
  }

  /** The activity at `nowMs` (also what the city's history is written from). */
  readSync(nowMs: number): Activity {
    const m = simulatedMoment(this.opts, nowMs);
    const a: Activity = { source: 'simulated', idleS: this.idleS(nowMs, m.slot, m.used), screenOn: m.on };
    if (m.used) {
      const apps = this.opts.teachingSite ? APPS.length : APPS.length - 1;
      const app = APPS[fnv1a(`${this.opts.seed}:${m.slot}:app`) % apps]!;
      a.foreground = app;
      if (app === 'chrome.exe' && this.opts.teachingSite) a.teachingSite = this.opts.teachingSite;
    } else if (m.on) {
      a.foreground = 'explorer.exe'; // the desktop: the teaching program was closed, the panel left on
    }
    return a;
  }
}
