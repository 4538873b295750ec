import { CST_OFFSET_MS } from '../../common/calendar.js';
import { fnv1a } from '../../common/hash.js';
import type { DisplayHealth } from '../../contracts/messages.js';

/**
 * A simulated teaching display for demos, the quickstart's city and tests. Deterministic for a given seed:
 * on during the configured teaching hours (China Standard Time) on weekdays,
 * showing input 31 (HDMI 1) when in use; an `idle` display stays off — the bought-but-unused equipment the
 * audit must find; `faulty` reports a lamp error.
 */
export interface SimulatedDisplayOptions {
  seed?: string;
  idle?: boolean;
  faulty?: boolean;
  /** Hours [start, end) in China Standard Time (UTC+8, as the school calendars) when it is on on weekdays. */
  onHours?: readonly [number, number];
  /** Share of teaching time actually used (0..1). */
  useShare?: number;
}

const hash = fnv1a;

export class SimulatedDisplay {
  private lampHours: number;

  constructor(private readonly opts: SimulatedDisplayOptions = {}) {
    this.lampHours = 200 + (hash(opts.seed ?? 'x') % 2_500);
  }

  read(now = new Date()): DisplayHealth {
    const [start, end] = this.opts.onHours ?? [8, 17];
    const cst = new Date(now.getTime() + CST_OFFSET_MS); // China Standard Time, whatever the machine's zone
    const day = cst.getUTCDay();
    const hour = cst.getUTCHours();
    const slot = Math.floor(now.getTime() / (45 * 60_000)); // a class period
    const used = (hash(`${this.opts.seed}:${slot}`) % 1000) / 1000 < (this.opts.useShare ?? 0.7);
    const on = !this.opts.idle && day >= 1 && day <= 5 && hour >= start && hour < end && used;
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
