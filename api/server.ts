import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry as PromRegistry } from 'prom-client';
import { z } from 'zod';
import { alertRoutes } from '../alerting/routes.js';
import { AlertService, type AlertsConfig } from '../alerting/service.js';
import {
  Calendars,
  calendarsSchema,
  dateOf,
  dayNumber,
  localDate,
  localMidnightMs,
} from '../common/calendar.js';
import { loadConfig } from '../common/config.js';
import { DayCache } from '../common/figures/days.js';
import { attainmentPoints } from '../common/figures/points.js';
import { DEFAULT_PROFILE, profileSchema, profileSet } from '../common/figures/profiles.js';
import { Reports } from '../common/figures/reports.js';
import type { Service } from '../common/lifecycle.js';
import { LiveState, liveLimitsSchema } from '../common/live.js';
import { mqttConfigSchema } from '../common/mqtt.js';
import { DEFAULT_IMPORT_LIMITS, type ImportLimits } from '../common/registry/limits.js';
import { RegistryStore } from '../common/registry/store.js';
import type { Storage } from '../common/storage/index.js';
import { Rollup } from '../rollup/rollup.js';
import { buildApp } from './app.js';
import { TokenStore } from './tokens.js';

export const apiConfigSchema = z
  .strictObject({
    host: z
      .string()
      .default('127.0.0.1')
      .describe('Listen address; put a TLS reverse proxy in front for remote users.'),
    port: z.number().int().min(0).max(65_535).default(8080),
    registryFile: z
      .string()
      .default('var/registry.json')
      .describe('The fleet registry (written by imports).'),
    calendarFile: z
      .string()
      .default('deploy/examples/calendar-2026-2027.yaml')
      .describe('School calendars (YAML with a `calendars:` list); replace the example with your 校历.'),
    tokensFile: z
      .string()
      .default('var/api-tokens.json')
      .describe('Token hashes (`npm run api -- tokens add`).'),
    defaultProfile: z.string().default(DEFAULT_PROFILE).describe('Profile used when a request names none.'),
    profiles: z
      .array(profileSchema)
      .default([])
      .describe('Extra standard profiles (same id replaces a built-in).'),
    rateLimit: z
      .strictObject({
        max: z.number().int().min(1).default(600).describe('Requests per token per window.'),
        timeWindowMs: z.number().int().min(1_000).default(60_000),
        authFailures: z
          .number()
          .int()
          .min(1)
          .default(30)
          .describe(
            'Failed authentications (no token, or one the API does not know) per client address per window, default 30; beyond, that address gets 429 `CFM_API_AUTH_LIMITED` with Retry-After instead of 401 until its window ends, counted in `cfm_api_auth_failures_total{outcome="limited"}` and logged once per window. A valid token is still served from a limited address, so a client with a wrong token behind the same NAT or proxy cannot lock operators out. Prevents a client cycling through tokens unnoticed and unthrottled: failed requests never reach the per-token limit.',
          ),
      })
      .prefault({}),
    bodyLimitBytes: z
      .number()
      .int()
      .min(1_024)
      .max(1024 * 1024 * 1024)
      .default(DEFAULT_IMPORT_LIMITS.maxFileBytes)
      .describe(
        'Largest registry import file as uploaded (an .xlsx compressed), default 32 MiB; larger is refused with 413 before it is read (also by `npm run api -- import`), so an upload cannot fill the memory. Every other route takes at most 64 KiB of body.',
      ),
    import: z
      .strictObject({
        maxInflatedBytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .max(2 * 1024 * 1024 * 1024)
          .default(DEFAULT_IMPORT_LIMITS.maxInflatedBytes)
          .describe(
            "Largest .xlsx workbook inflated (its zip parts summed), default 256 MiB: checked from the zip's directory before inflating and enforced while inflating; refused with 413. Prevents a zip bomb (kilobytes that inflate to gigabytes) from exhausting memory.",
          ),
        maxRows: z
          .number()
          .int()
          .min(1)
          .default(DEFAULT_IMPORT_LIMITS.maxRows)
          .describe(
            'Most data rows in one import, all sheets and files together, default 200,000 (a city of 2,000 schools, 40,000 classrooms and 80,000 devices has ~122,000); more is refused with 422 as soon as they are counted. Prevents a million-row file from holding the importer for minutes.',
          ),
        maxCells: z
          .number()
          .int()
          .min(1)
          .default(DEFAULT_IMPORT_LIMITS.maxCells)
          .describe(
            'Most cells read in one import (a row counts up to its last cell, empty ones included), default 3,000,000; more is refused with 422. Prevents a sheet of a few rows thousands of columns wide from exhausting memory.',
          ),
        timeoutMs: z
          .number()
          .int()
          .min(1_000)
          .default(DEFAULT_IMPORT_LIMITS.timeoutMs)
          .describe(
            'Longest an import may take (parse, merge, check; in a worker process), default 120 s; the worker is then stopped and the import refused with 413. Prevents a slow file from occupying a core indefinitely.',
          ),
        maxHeapMb: z
          .number()
          .int()
          .min(64)
          .max(16_384)
          .default(DEFAULT_IMPORT_LIMITS.maxHeapMb)
          .describe(
            "Heap of the import worker process (V8 old generation, `--max-old-space-size`), default 1024 MB; a worker that needs more ends and the import refused with 413 while the API goes on serving. Prevents an import from exhausting the API process's memory.",
          ),
      })
      .prefault({})
      .describe(
        'Bounds of a registry import (`POST /v1/registry/import`, `npm run api -- import`); one import runs at a time, in a worker process.',
      ),
    cacheTtlMs: z
      .number()
      .int()
      .min(0)
      .default(300_000)
      .describe(
        'How long a period’s sums are reused; loaded days are re-checked against their rollup markers this often.',
      ),
    cacheDays: z
      .number()
      .int()
      .min(31)
      .max(2_000)
      .default(400)
      .describe('Days of rollups kept in memory (~0.5 MB per day for a city of 40,000 devices).'),
    preloadDays: z
      .number()
      .int()
      .min(0)
      .max(400)
      .default(45)
      .describe('Days before today loaded at start, so the first reports are quick.'),
    mqtt: mqttConfigSchema
      .unwrap() // no defaults when absent: without a broker the API serves reports only
      .optional()
      .describe(
        'Broker for live status and bandwidth (a `reader` user: subscribes only, never counts as the collector devices wait for); absent: reports only.',
      ),
    live: liveLimitsSchema,
    rollup: z
      .strictObject({
        enabled: z
          .boolean()
          .default(true)
          .describe('Run the daily rollups here (exactly one API instance should).'),
        bucketS: z
          .number()
          .int()
          .min(60)
          .max(3_600)
          .default(300)
          .describe("Rollup bucket; at least the agents' and pollers' reporting interval."),
        lateDays: z
          .number()
          .int()
          .min(0)
          .max(60)
          .default(3)
          .describe('Finished days rolled up again each run.'),
        everyMs: z
          .number()
          .int()
          .min(60_000)
          .default(3_600_000)
          .describe('How often the rollup runs (today included).'),
        attainmentWindowDays: z
          .number()
          .int()
          .min(0)
          .max(366)
          .default(30)
          .describe(
            'Each rolled-up day also gets `attainment_day` points (for dashboards): the attainment of this many days ending that day, per profile; 0 = none.',
          ),
      })
      .prefault({}),
  })
  .prefault({})
  .describe('The API: registry, calendars, attainment and audit reports, live fleet state.');
export type ApiConfig = z.infer<typeof apiConfigSchema>;

/** The import limits of an API configuration. */
export function importLimits(c: Pick<ApiConfig, 'bodyLimitBytes' | 'import'>): ImportLimits {
  return { maxFileBytes: c.bodyLimitBytes, ...c.import };
}

export function loadCalendars(file: string): Calendars {
  return new Calendars(
    loadConfig(z.strictObject({ calendars: calendarsSchema }), { file, env: {} }).calendars,
  );
}

/** The API process: registry, calendars, tokens, live state, reports, the rollup schedule and the HTTP server. */
export class ApiServer implements Service {
  readonly name = 'api';
  readonly registry: RegistryStore;
  readonly tokens: TokenStore;
  readonly live: LiveState;
  readonly days: DayCache;
  readonly reports: Reports;
  readonly profiles: ReturnType<typeof profileSet>;
  readonly rollup: Rollup;
  readonly metrics = new PromRegistry();
  private calendars: Calendars;
  private app: Awaited<ReturnType<typeof buildApp>> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private rolling: Promise<void> | undefined;
  private readonly rollupLast = new Gauge({
    name: 'cfm_api_rollup_last_success_seconds',
    help: 'Unix time of the last successful rollup run.',
    registers: [this.metrics],
  });
  private readonly rollupFailures = new Counter({
    name: 'cfm_api_rollup_failures_total',
    help: 'Rollup runs that failed (InfluxDB unreachable, …).',
    registers: [this.metrics],
  });

  readonly alerts: AlertService | undefined;

  constructor(
    readonly config: ApiConfig,
    private readonly deps: { log: Logger; storage: Storage; now?: () => number; alerts?: AlertsConfig },
  ) {
    this.registry = new RegistryStore(config.registryFile, importLimits(config));
    this.tokens = new TokenStore(config.tokensFile, { log: deps.log.child({ part: 'tokens' }) });
    this.calendars = new Calendars([]);
    const alerting = deps.alerts?.enabled ?? false;
    this.live = new LiveState(config.mqtt, deps.log.child({ part: 'live' }), alerting, {
      registry: () => this.registry.index,
      limits: config.live,
    });
    this.alerts = alerting
      ? new AlertService(deps.alerts!, {
          log: deps.log.child({ part: 'alerts' }),
          storage: deps.storage,
          registry: this.registry,
          calendars: () => this.calendars,
          live: this.live,
        })
      : undefined;
    this.days = new DayCache({
      storage: deps.storage,
      checkEveryMs: config.cacheTtlMs,
      maxDays: config.cacheDays,
    });
    this.profiles = profileSet(config.profiles);
    if (!this.profiles.has(config.defaultProfile))
      throw new Error(`api.defaultProfile: no profile ${config.defaultProfile}`);
    this.reports = new Reports({
      days: this.days,
      registry: this.registry,
      calendars: () => this.calendars,
      ttlMs: config.cacheTtlMs,
    });
    this.rollup = new Rollup({
      storage: deps.storage,
      registry: () => this.registry.index,
      calendars: () => this.calendars,
      log: deps.log.child({ part: 'rollup' }),
      bucketS: config.rollup.bucketS,
    });
    const reports = this.reports;
    const live = this.live;
    const days = this.days;
    const alerts = this.alerts;
    new Gauge({
      name: 'cfm_api_alerts_active',
      help: 'Active alerts by state (pending, firing).',
      labelNames: ['state'],
      registers: [this.metrics],
      collect() {
        const n = { pending: 0, firing: 0 };
        for (const a of alerts?.engine.active.values() ?? []) if (a.state !== 'resolved') n[a.state]++;
        this.set({ state: 'pending' }, n.pending);
        this.set({ state: 'firing' }, n.firing);
      },
    });
    new Gauge({
      name: 'cfm_api_alert_deliveries',
      help: 'Notification deliveries since start, by outcome.',
      labelNames: ['outcome'],
      registers: [this.metrics],
      collect() {
        this.set({ outcome: 'delivered' }, alerts?.deliverer.delivered ?? 0);
        this.set({ outcome: 'failed' }, alerts?.deliverer.failed ?? 0);
      },
    });
    new Gauge({
      name: 'cfm_api_alert_state_write_failures',
      help: 'Alert state-file writes that failed since start (a full disk, permissions).',
      registers: [this.metrics],
      collect() {
        this.set(alerts?.saveFailures ?? 0);
      },
    });
    new Gauge({
      name: 'cfm_api_alert_state_recovered',
      help: '1 when the alert state file was malformed at start and its last good copy (<stateFile>.bak) was loaded instead (the log says why).',
      registers: [this.metrics],
      collect() {
        this.set(alerts?.recoveredFrom ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cfm_api_rollup_days_loaded',
      help: 'Rolled-up days read from InfluxDB into the day cache since start.',
      registers: [this.metrics],
      collect() {
        this.set(days.loads);
      },
    });
    new Gauge({
      name: 'cfm_api_report_loads',
      help: 'Period rollup sums loaded from InfluxDB since start (report cache misses).',
      registers: [this.metrics],
      collect() {
        this.set(reports.loads);
      },
    });
    new Gauge({
      name: 'cfm_api_live_devices',
      help: 'Devices whose live status the API holds (registered, and unregistered within api.live bounds).',
      registers: [this.metrics],
      collect() {
        this.set(live.stats().devices);
      },
    });
    new Gauge({
      name: 'cfm_api_live_unassigned',
      help: 'Devices not in the registry whose live status or uplink the API holds (bounded by api.live).',
      registers: [this.metrics],
      collect() {
        this.set(live.stats().unassigned);
      },
    });
    new Gauge({
      name: 'cfm_api_live_unassigned_evicted',
      help: 'Devices not in the registry evicted from the live view since start, because their school (scope="school") or all (scope="total") were full.',
      labelNames: ['scope'],
      registers: [this.metrics],
      collect() {
        const e = live.stats().unassignedEvicted;
        this.set({ scope: 'school' }, e.school);
        this.set({ scope: 'total' }, e.total);
      },
    });
    new Gauge({
      name: 'cfm_api_live_rejected',
      help: 'Live MQTT messages that failed validation since start (dropped).',
      registers: [this.metrics],
      collect() {
        this.set(live.rejected);
      },
    });
  }

  get url(): string {
    const a = this.app?.server.address();
    return a && typeof a === 'object' ? `http://${a.address}:${a.port}` : '';
  }

  async start(): Promise<void> {
    const { config, deps } = this;
    this.registry.load();
    this.tokens.load();
    this.calendars = loadCalendars(config.calendarFile);
    this.alerts?.start();
    await this.live.start();
    const app = await buildApp({
      registry: this.registry,
      calendars: () => this.calendars,
      tokens: this.tokens,
      reports: this.reports,
      profiles: this.profiles,
      defaultProfile: config.defaultProfile,
      live: this.live,
      storage: deps.storage,
      metrics: this.metrics,
      log: deps.log,
      rateLimit: config.rateLimit,
    });
    await app.register(alertRoutes, { alerts: this.alerts, registry: this.registry });
    const duration = new Histogram({
      name: 'cfm_api_request_duration_seconds',
      help: 'API request latency by route and status.',
      labelNames: ['route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [this.metrics],
    });
    app.addHook('onResponse', async (req, reply) => {
      duration.observe(
        { route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    });
    await app.listen({ host: config.host, port: config.port });
    this.app = app;
    deps.log.info({ url: this.url, schools: this.registry.index.data.schools.length }, 'api listening');
    if (config.preloadDays > 0) {
      const today = localDate((deps.now ?? Date.now)());
      const from = dateOf(dayNumber(today) - config.preloadDays);
      const t = performance.now();
      void this.days.ensure(from, today).then(
        () => deps.log.info({ from, to: today, ms: Math.round(performance.now() - t) }, 'rollups preloaded'),
        (err: unknown) => deps.log.warn({ err }, 'preloading rollups failed; reports load them on demand'),
      );
    }
    if (config.rollup.enabled) {
      void this.runRollups();
      this.timer = setInterval(() => void this.runRollups(), config.rollup.everyMs);
    }
  }

  /** Rolls up the last `lateDays` finished days and today so far; never two runs at once. */
  runRollups(): Promise<void> {
    this.rolling ??= (async () => {
      try {
        const now = (this.deps.now ?? Date.now)();
        const dates = [
          ...Rollup.dueDates(now, this.config.rollup.lateDays),
          ...Rollup.dueDates(now + 86_400_000, 1),
        ];
        for (const d of dates) await this.rollup.day(d, now);
        this.reports.invalidate(dates);
        await this.writeAttainment(dates.filter((d) => d <= localDate(now)));
        this.rollupLast.set(Math.round(now / 1000));
      } catch (err) {
        this.rollupFailures.inc();
        this.deps.log.error({ err }, 'rollup failed; next run retries');
      } finally {
        this.rolling = undefined;
      }
    })();
    return this.rolling;
  }

  /**
   * `attainment_day` for dashboards: for each rolled-up date and each profile, the attainment of the
   * `attainmentWindowDays` ending that date, evaluated exactly as /v1/attainment evaluates it.
   */
  private async writeAttainment(dates: readonly string[]): Promise<void> {
    const windowDays = this.config.rollup.attainmentWindowDays;
    if (windowDays === 0) return;
    for (const to of dates) {
      const period = { from: dateOf(dayNumber(to) - windowDays + 1), to };
      for (const profile of this.profiles.values()) {
        const ev = await this.reports.evaluation(period, profile);
        this.deps.storage.write(attainmentPoints(ev, this.registry.index, localMidnightMs(to)));
      }
    }
    await this.deps.storage.flush();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.rolling;
    await this.registry.stop();
    await this.app?.close();
    await this.live.stop();
    await this.alerts?.stop();
  }
}
