import type { Logger } from 'pino';
import type { Registry as PromRegistry } from 'prom-client';
import type { Calendar, Calendars } from '../common/calendar.js';
import type { LiveMessage, LiveState } from '../common/live.js';
import { gauge, labelledGauge } from '../common/metrics.js';
import type { RegistryStore } from '../common/registry/store.js';
import type { Storage } from '../common/storage/index.js';
import type { AlertsConfig } from './config.js';
import { Deliverer } from './deliver.js';
import { AlertEngine, type Notification } from './engine.js';
import { type Names, render } from './render.js';
import { Signals } from './signals.js';
import { silenced } from './silences.js';
import { type Silence, type StateFile, silenceSchema } from './state.js';
import { StateStore } from './store.js';

export { type AlertsConfig, alertsConfigSchema } from './config.js';
export { type Silence, silenceSchema } from './state.js';

/** Deadline ticks are at least this far apart (the precision of the alert timers). */
const MIN_TICK_MS = 10;

/**
 * The alerting service: live MQTT messages → signals (signals.ts) → the engine (engine.ts) on its timers →
 * notifications rendered (render.ts) and delivered on the channels (deliver.ts, channels/), also written as
 * `alert` points; silences and maintenance windows (silences.ts); the state file (store.ts). Design:
 * alerting/README.md. Exactly one runs per deployment (it holds the alert state); its HTTP routes are
 * routes.ts, mounted by whichever process runs it.
 */
export class AlertService {
  readonly engine: AlertEngine;
  readonly deliverer: Deliverer;
  silences: Silence[] = [];
  /** Ticks run (tests wait for some to pass when asserting that nothing happens). */
  ticks = 0;
  /** State-file writes that failed since start. */
  saveFailures = 0;
  private readonly signals: Signals;
  private readonly store: StateStore;
  private timer: NodeJS.Timeout | undefined;
  /** When the timer is due (Infinity: none set). */
  private timerAtMs = Number.POSITIVE_INFINITY;
  private stopped = true;
  private gapsAtMs = 0;
  private savedVersion = -1;
  private dirty = false;
  private readonly onMessage = (m: LiveMessage) => {
    this.signal(m);
    // A signal may have set an earlier deadline than the one the timer sleeps towards.
    if (this.engine.nextWakeMs < this.timerAtMs) this.schedule();
  };

  constructor(
    readonly config: AlertsConfig,
    private readonly deps: {
      log: Logger;
      registry: RegistryStore;
      calendars: () => Calendars;
      live: LiveState;
      now?: () => number;
      /** Where notifications are also written as `alert` points; absent: nowhere. */
      storage?: Pick<Storage, 'write'>;
    },
  ) {
    const { rules } = config; // each rule whole: its fields as configured, the rest its defaults
    this.signals = new Signals(rules);
    this.store = new StateStore(config.stateFile, deps.log);
    this.engine = new AlertEngine({
      rules,
      groupWaitS: config.groupWaitS,
      flap: config.flap,
      teaching: (school, ms) => this.calendarOf(school)?.isTeachingTime(ms) ?? false,
      teachingDeadline: (school, from, classMs) =>
        this.calendarOf(school)?.teachingDeadline(from, classMs) ?? Number.POSITIVE_INFINITY,
      silenced: (a, ms) =>
        silenced(a, ms, deps.registry.index.schoolPath(a.school), this.silences, config.maintenance),
      historyMax: config.historyMax,
    });
    this.deliverer = new Deliverer({
      log: deps.log,
      ...config.delivery,
      keep: 2_000,
      onChange: () => {
        this.dirty = true;
      },
    });
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  start(): void {
    this.load();
    this.stopped = false;
    this.deps.live.on('message', this.onMessage);
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    this.deps.live.off('message', this.onMessage);
    this.deliverer.stop();
    this.save(true);
  }

  /** Feeds one live message to the engine. Public for tests with a fake clock. */
  signal(m: LiveMessage): void {
    for (const s of this.signals.from(m, this.deps.registry.index)) this.engine.observe(s);
  }

  /** One step: engine timers, deliveries, the state file. Public for tests with a fake clock. */
  tick(now = this.now()): void {
    this.ticks++;
    if (now < this.gapsAtMs || now - this.gapsAtMs >= this.config.tickMs) {
      this.gapsAtMs = now;
      for (const s of this.signals.gaps(now)) this.engine.observe(s);
    }
    for (const n of this.engine.tick(now)) this.deliver(n);
    this.save(false);
  }

  /**
   * Sleeps until the engine's next deadline (a grace period ending, a group window closing), so alerts fire on
   * time rather than on the next tick; at most `tickMs`, for calendar and silence boundaries. Ticks are at
   * least `MIN_TICK_MS` apart, so a burst of deadlines costs a few evaluations, not one each.
   */
  private schedule(): void {
    if (this.stopped) return;
    const now = this.now();
    const at = Math.max(Math.min(this.engine.nextWakeMs, now + this.config.tickMs), now + MIN_TICK_MS);
    if (this.timer !== undefined && this.timerAtMs <= at) return;
    clearTimeout(this.timer);
    this.timerAtMs = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAtMs = Number.POSITIVE_INFINITY;
      try {
        this.tick();
      } finally {
        this.schedule();
      }
    }, at - now);
  }

  /** The calendar of a school; undefined for a school the registry or the calendars do not know. */
  private calendarOf(school: string): Calendar | undefined {
    const reg = this.deps.registry.index;
    const s = reg.schools.get(school);
    return s ? this.deps.calendars().forSchool(school, reg.regionPath(s.region)) : undefined;
  }

  // ---- delivery ----------------------------------------------------------------------------------------------

  private names(): Names {
    const reg = this.deps.registry.index;
    return {
      schoolName: (id) => reg.schools.get(id)?.name ?? id,
      regionNames: (id) => {
        const path = reg.schoolPath(id);
        return path
          ? path
              .split('/')
              .map((r) => reg.regions.get(r)?.name ?? r)
              .join(' ')
          : '';
      },
      regionPath: (id) => reg.schoolPath(id),
      classroomName: (school, device) => {
        const c = reg.device(school, device)?.classroom;
        return c ? reg.classroom(school, c)?.name : undefined;
      },
    };
  }

  private deliver(n: Notification): void {
    const rendered = render(n, this.names(), this.config.linkBaseUrl);
    this.deps.log.info({ school: n.school, title: rendered.title, items: n.items.length }, 'notification');
    const path = this.deps.registry.index.schoolPath(n.school);
    this.deliverer.deliver(this.config.channels, n, rendered, path);
    // The notification as points, for the alerts dashboard (buffered and retried by the storage's writer).
    this.deps.storage?.write(
      n.items.map(({ kind, alert: a }) => ({
        measurement: 'alert' as const,
        ts: n.atMs,
        tags: {
          ...(path ? { region: path } : {}),
          school: a.school,
          ...(a.device ? { device: a.device } : {}),
          rule: a.rule,
          severity: a.severity,
          ...(a.subject ? { subject: a.subject } : {}),
        },
        fields: {
          kind,
          firing: kind === 'resolved' ? 0 : 1,
          alert_id: a.id,
          message: a.message,
          affected: a.affected.length,
          ...(kind === 'resolved' ? { duration_s: (n.atMs - a.startedAtMs) / 1000 } : {}),
        },
      })),
    );
    this.dirty = true;
  }

  // ---- state ---------------------------------------------------------------------------------------------------

  /** Set when the state came from `<stateFile>.bak` because the state file was malformed (store.ts). */
  get recoveredFrom(): string | undefined {
    return this.store.recoveredFrom;
  }

  private load(): void {
    const s = this.store.load();
    if (s === undefined) return;
    this.engine.restore(s.active, s.history, s.queue);
    // Saved by an older version, a silence may name a device without its school: it would match that id in
    // every school, so it is dropped (and said), not applied.
    this.silences = s.silences.filter((x) => silenceSchema.safeParse(x).success);
    if (this.silences.length < s.silences.length)
      this.deps.log.warn(
        { file: this.config.stateFile, dropped: s.silences.length - this.silences.length },
        'saved silences dropped: naming a device without its school (which would silence that id in every school); create them again',
      );
    // Deliveries cut short by the restart are finished now (the engine already counts them as notified).
    this.deliverer.resume(s.deliveries, this.config.channels);
    this.savedVersion = this.engine.version;
  }

  /** Writes the state file when something changed (`force`: in any case). */
  save(force: boolean): void {
    if (!force && !this.dirty && this.engine.version === this.savedVersion) return;
    const state: StateFile = {
      version: 1,
      active: [...this.engine.active.values()],
      history: this.engine.history,
      queue: this.engine.pendingQueue(),
      silences: this.silences,
      deliveries: this.deliverer.records,
    };
    try {
      this.store.write(state);
      this.savedVersion = this.engine.version;
      this.dirty = false;
    } catch (err) {
      // A full disk must not take the process down; the next change tries again.
      this.saveFailures++;
      this.deps.log.error({ err, file: this.config.stateFile }, 'alerts state not written');
    }
  }

  addSilence(s: Omit<Silence, 'id'>): Silence {
    const silence = { ...s, id: `s${this.now().toString(36)}${Math.random().toString(36).slice(2, 6)}` };
    this.silences.push(silence);
    this.silences = this.silences.filter((x) => x.endsAtMs > this.now());
    this.dirty = true;
    return silence;
  }

  removeSilence(id: string): boolean {
    const n = this.silences.length;
    this.silences = this.silences.filter((s) => s.id !== id);
    this.dirty = this.dirty || this.silences.length !== n;
    return this.silences.length !== n;
  }
}

/**
 * The alerting gauges, read when /metrics is scraped (names kept from when it lived in the API); all 0 when
 * alerting is off in a process that would run it, so dashboards and rules see 0, not "no data".
 */
export function registerAlertMetrics(registry: PromRegistry, service: AlertService | undefined): void {
  labelledGauge(
    registry,
    'cfm_api_alerts_active',
    'Active alerts by state (pending, firing).',
    'state',
    () => {
      const n = { pending: 0, firing: 0 };
      for (const a of service?.engine.active.values() ?? []) if (a.state !== 'resolved') n[a.state]++;
      return n;
    },
  );
  labelledGauge(
    registry,
    'cfm_api_alert_deliveries',
    'Notification deliveries since start, by outcome.',
    'outcome',
    () => ({ delivered: service?.deliverer.delivered ?? 0, failed: service?.deliverer.failed ?? 0 }),
  );
  gauge(
    registry,
    'cfm_api_alert_state_write_failures',
    'Alert state-file writes that failed since start (a full disk, permissions).',
    () => service?.saveFailures ?? 0,
  );
  gauge(
    registry,
    'cfm_api_alert_state_recovered',
    '1 when the alert state file was malformed at start and its last good copy (<stateFile>.bak) was loaded instead (the log says why).',
    () => (service?.recoveredFrom ? 1 : 0),
  );
}
