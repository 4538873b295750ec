import { CST_OFFSET_MS } from '../../common/calendar.js';
import { fnv1a } from '../../common/hash.js';
import type { DisplayHealth } from '../../contracts/messages.js';

/**
 * A simulated classroom for demos, the quickstart's city and tests. Deterministic for a given seed and time:
 * its teaching display is on during the configured teaching hours (China Standard Time) on weekdays, in the
 * 45-minute slots it is switched on for (a `useShare` of them, chosen by the seed) — or, `leftOn`, all those hours
 * (the panel switched on in the morning and left on); it is used in the slots it was switched on for, but for an
 * `unattendedShare` of them in which nobody is at the board (on but unused); an `idle` display stays off — the
 * bought-but-unused equipment the audit must find; `faulty` reports a lamp error. The person at it is simulated
 * by `activity/simulated.ts` from the same slots, so display and activity agree.
 */
export interface SimulatedDisplayOptions {
  seed?: string;
  idle?: boolean;
  faulty?: boolean;
  /** On for all of `onHours` on weekdays, used or not. */
  leftOn?: boolean;
  /** Hours [start, end) in China Standard Time (UTC+8, as the school calendars) when it is on on weekdays. */
  onHours?: readonly [number, number];
  /** Share of teaching time it is switched on for (0..1). */
  useShare?: number;
  /** Share of the slots it is switched on for with nobody at the board (0..1, default 0). */
  unattendedShare?: number;
}

const hash = fnv1a;

/** A simulated slot: a class period's length, counted from the epoch. */
export const SIM_SLOT_MS = 45 * 60_000;

export interface SimulatedMoment {
  /** A weekday, within `onHours` (CST). */
  inHours: boolean;
  /** Someone teaches with it in this slot. */
  used: boolean;
  /** The display is on. */
  on: boolean;
  slot: number;
}

/** What the simulated classroom `opts` does at `ms`: the one place display and activity simulations agree on. */
export function simulatedMoment(opts: SimulatedDisplayOptions, ms: number): SimulatedMoment {
  const [start, end] = opts.onHours ?? [8, 17];
  const cst = new Date(ms + CST_OFFSET_MS); // China Standard Time, whatever the machine's zone
  const day = cst.getUTCDay();
  const hour = cst.getUTCHours();
  const slot = Math.floor(ms / SIM_SLOT_MS);
  const inHours = day >= 1 && day <= 5 && hour >= start && hour < end;
  const switchedOn =
    !opts.idle && inHours && (hash(`${opts.seed}:${slot}`) % 1000) / 1000 < (opts.useShare ?? 0.7);
  const unattended =
    (opts.unattendedShare ?? 0) > 0 &&
    (hash(`${opts.seed}:${slot}:unattended`) % 1000) / 1000 < (opts.unattendedShare ?? 0);
  return {
    inHours,
    used: switchedOn && !unattended,
    on: !opts.idle && inHours && (switchedOn || opts.leftOn === true),
    slot,
  };
}

export class SimulatedDisplay {
  private lampHours: number;

  constructor(private readonly opts: SimulatedDisplayOptions = {}) {
    this.lampHours = 200 + (hash(opts.seed ?? 'x') % 2_500);
  }

  read(now = new Date()): DisplayHealth {
    const { on, slot } = simulatedMoment(this.opts, now.getTime());
    if (on) this.lampHours += 1 / 360; // ~one reading every 10 s
    const errors = {
      fan: 'ok',
      lamp: this.opts.faulty ? 'error' : 'ok',
      temperature: 'ok',
      cover: 'ok',
      filter: 'ok',
      other: 'ok',
    } as const;
    return {
      source: 'simulated',
      power: on ? 'on' : 'off',
      ...(on ? { input: '31', temperatureC: 38 + (hash(`${this.opts.seed}:${slot}:t`) % 80) / 10 } : {}),
      touchOk: true,
      lampHours: Math.floor(this.lampHours),
      errors,
    };
  }
}
