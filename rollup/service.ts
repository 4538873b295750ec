import type { Logger } from 'pino';
import { Counter, Gauge, type Registry as PromRegistry } from 'prom-client';
import { type Calendars, dateOf, dayNumber, localDate, localMidnightMs } from '../common/calendar.js';
import { attainmentPoints } from '../common/figures/points.js';
import type { Profile } from '../common/figures/profiles.js';
import type { Reports } from '../common/figures/reports.js';
import type { Service } from '../common/lifecycle.js';
import type { RegistryStore } from '../common/registry/store.js';
import type { Storage } from '../common/storage/index.js';
import type { RollupConfig } from './config.js';
import { Rollup } from './rollup.js';

/**
 * The rollup schedule: every `everyMs`, rolls up the last `lateDays` finished days and today so far
 * (rollup.ts), tells the reports which days changed, and writes the `attainment_day` points the dashboards
 * read. A singleton per deployment (the all-in-one API process, or the worker of a scaled deployment); the
 * API instances of a scaled deployment see new days through the rollup markers (common/figures/days.ts).
 */
export class RollupService implements Service {
  readonly name = 'rollup';
  readonly rollup: Rollup;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly lastSuccess: Gauge;
  private readonly failures: Counter;

  constructor(
    readonly config: RollupConfig,
    private readonly deps: {
      storage: Storage;
      registry: RegistryStore;
      calendars: () => Calendars;
      /** The reports whose cached sums a run invalidates, and which evaluate `attainment_day`. */
      reports: Reports;
      profiles: () => Iterable<Profile>;
      log: Logger;
      metrics: PromRegistry;
      now?: () => number;
    },
  ) {
    this.rollup = new Rollup({
      storage: deps.storage,
      registry: () => deps.registry.index,
      calendars: deps.calendars,
      log: deps.log,
      bucketS: config.bucketS,
      keep: { settleMs: config.settleMs },
      readsInFlight: config.readsInFlight,
    });
    // Names kept from when the rollup ran inside the API (dashboards and alert rules use them).
    this.lastSuccess = new Gauge({
      name: 'cfm_api_rollup_last_success_seconds',
      help: 'Unix time of the last successful rollup run.',
      registers: [deps.metrics],
    });
    this.failures = new Counter({
      name: 'cfm_api_rollup_failures_total',
      help: 'Rollup runs that failed (InfluxDB unreachable, …).',
      registers: [deps.metrics],
    });
  }

  async start(): Promise<void> {
    if (!this.config.enabled) return;
    void this.run();
    this.timer = setInterval(() => void this.run(), this.config.everyMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Rolls up the last `lateDays` finished days and today so far; never two runs at once. */
  run(): Promise<void> {
    this.running ??= (async () => {
      try {
        const now = (this.deps.now ?? Date.now)();
        const dates = [
          ...Rollup.dueDates(now, this.config.lateDays),
          ...Rollup.dueDates(now + 86_400_000, 1),
        ];
        for (const d of dates) {
          await this.rollup.day(d, now);
          // At once, not after the whole run: a report asked for meanwhile (or the API's preload, which may
          // have read the day before it was rolled up) reads the day again.
          this.deps.reports.invalidate([d]);
        }
        this.rollup.forgetBefore(dates[0]!);
        await this.writeAttainment(dates.filter((d) => d <= localDate(now)));
        this.lastSuccess.set(Math.round(now / 1000));
      } catch (err) {
        this.failures.inc();
        this.deps.log.error({ err }, 'rollup failed; next run retries');
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /**
   * `attainment_day` for dashboards: for each rolled-up date and each profile, the attainment of the
   * `attainmentWindowDays` ending that date, evaluated exactly as /v1/attainment evaluates it.
   */
  private async writeAttainment(dates: readonly string[]): Promise<void> {
    const windowDays = this.config.attainmentWindowDays;
    if (windowDays === 0) return;
    for (const to of dates) {
      const period = { from: dateOf(dayNumber(to) - windowDays + 1), to };
      for (const profile of this.deps.profiles()) {
        const ev = await this.deps.reports.evaluation(period, profile);
        this.deps.storage.write(attainmentPoints(ev, this.deps.registry.index, localMidnightMs(to)));
      }
    }
    await this.deps.storage.flush();
  }
}
