import type { Logger } from 'pino';
import { Histogram, Registry as PromRegistry } from 'prom-client';
import { z } from 'zod';
import { Calendars, calendarsSchema, dateOf, dayNumber, localDate } from '../common/calendar.js';
import { loadConfig } from '../common/config.js';
import { readCredentialNames, readCredentialNamesFile } from '../common/credentials-file.js';
import { DayCache } from '../common/figures/days.js';
import { DEFAULT_PROFILE, profileSchema, profileSet } from '../common/figures/profiles.js';
import { Reports } from '../common/figures/reports.js';
import type { Service } from '../common/lifecycle.js';
import { LiveState, liveLimitsSchema } from '../common/live.js';
import { gauge, labelledGauge } from '../common/metrics.js';
import { mqttConfigSchema } from '../common/mqtt.js';
import { DEFAULT_IMPORT_LIMITS, type ImportLimits } from '../common/registry/limits.js';
import { RegistryStore } from '../common/registry/store.js';
import type { Storage } from '../common/storage/index.js';
import { buildApp, type RoutePlugin } from './app.js';
import { TokenStore } from './tokens.js';

/** The `api` section's fields (the composition root adds the deprecated `api.rollup`: api/compose.ts). */
export const API_CONFIG_SHAPE = {
  host: z
    .string()
    .default('127.0.0.1')
    .describe('Listen address; put a TLS reverse proxy in front for remote users.'),
  port: z.number().int().min(0).max(65_535).default(8080),
  registryFile: z.string().default('var/registry.json').describe('The fleet registry (written by imports).'),
  credentialNamesFile: z
    .string()
    .optional()
    .describe(
      "The names-only copy of the pollers' credentials file (`npm run poller -- credential-names`: `credentialNames: [..]`, no secret): when set, an import naming a device `credentialRef` that is not in it is refused by row and column. Read at each import; an unreadable or malformed file refuses every import, and so does the full credentials file given here (it holds secrets the API's machine should not). Set this or `pollerCredentialsFile`, not both: both is a configuration error.",
    ),
  pollerCredentialsFile: z
    .string()
    .optional()
    .describe(
      "The pollers' full credentials file (`poller.credentialsFile`), as `credentialNamesFile` but read where the poller's secrets are: only its credential NAMES are read, never a secret; a key other than `snmp:` refuses every import, naming the file (the names-only copy's `credentialNames:` with a sentence: it belongs in `credentialNamesFile`). Kept for deployments that run the API beside the poller; prefer `credentialNamesFile`, so the API's machine holds no community or key.",
    ),
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
  alertsUrl: z
    .url()
    .refine((u) => !new URL(u).username && !new URL(u).password, {
      message: 'must not carry user:password@ (the caller’s bearer token is forwarded instead)',
    })
    .optional()
    .describe(
      "A scaled deployment's API instance (`--role api`): the URL of the worker (`--role worker`) that runs alerting; the alert routes (`/v1/alerts…`, `/v1/silences…`) are authenticated here and forwarded there, so every instance answers them alike. Absent on such an instance: they answer 404.",
    ),
};
export const API_CONFIG_DESCRIPTION =
  'The API: registry, calendars, attainment and audit reports, live fleet state.';
/**
 * The `api` section's checks across its fields, for every schema of it (`apiConfigSchema`, compose.ts's): the
 * two sources of credential names exclude each other — so config loading and `--print-config` refuse both,
 * naming the config file, as any other config error.
 */
export const API_CONFIG_REFINE: [
  (c: { credentialNamesFile?: string | undefined; pollerCredentialsFile?: string | undefined }) => boolean,
  { message: string; path: string[] },
] = [
  (c) => c.credentialNamesFile === undefined || c.pollerCredentialsFile === undefined,
  { message: 'set this or api.pollerCredentialsFile, not both', path: ['credentialNamesFile'] },
];
export const apiConfigSchema = z
  .strictObject(API_CONFIG_SHAPE)
  .refine(...API_CONFIG_REFINE)
  .prefault({})
  .describe(API_CONFIG_DESCRIPTION);
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

/**
 * The API host: registry, calendars, tokens, the live view, reports and the HTTP server with its routes. What
 * else runs in the process is the composition root's choice (api/main.ts): it mounts more route plugins
 * (`mount`) and co-hosts services (`cohost`: started once the files are loaded and before the live view
 * connects, so they see the broker's retained statuses — or, `afterListen`, once the server listens; all stopped
 * after the HTTP server).
 */
/**
 * How an import learns the pollers' credential names: from `api.credentialNamesFile` (the names-only copy), or
 * the names of `api.pollerCredentialsFile` (the full file); undefined: not checked. Never both: the schema
 * refuses that (`API_CONFIG_REFINE`).
 */
export function credentialNamesReader(
  config: Pick<ApiConfig, 'credentialNamesFile' | 'pollerCredentialsFile'>,
): (() => string[]) | undefined {
  const { credentialNamesFile: names, pollerCredentialsFile: full } = config;
  if (names !== undefined) return () => readCredentialNamesFile(names);
  if (full !== undefined) return () => readCredentialNames(full);
  return undefined;
}

export class ApiServer implements Service {
  readonly name = 'api';
  readonly registry: RegistryStore;
  readonly tokens: TokenStore;
  readonly live: LiveState;
  readonly days: DayCache;
  readonly reports: Reports;
  readonly profiles: ReturnType<typeof profileSet>;
  readonly metrics = new PromRegistry();
  /** The calendars as last loaded. */
  readonly calendars = (): Calendars => this.loadedCalendars;
  private loadedCalendars = new Calendars([]);
  private app: Awaited<ReturnType<typeof buildApp>> | undefined;
  private readonly mounted: RoutePlugin[] = [];
  private readonly cohosted: { service: Service; afterListen: boolean }[] = [];

  constructor(
    readonly config: ApiConfig,
    private readonly deps: {
      log: Logger;
      storage: Storage;
      now?: () => number;
      /** Serve the fleet, report and registry routes (false: a worker's host, for its own routes only). */
      routes?: boolean;
      /** The live view also takes events and telemetry (a co-hosted alerting service needs them). */
      liveAll?: boolean;
    },
  ) {
    this.registry = new RegistryStore(
      config.registryFile,
      importLimits(config),
      credentialNamesReader(config),
    );
    this.tokens = new TokenStore(config.tokensFile, { log: deps.log.child({ part: 'tokens' }) });
    this.live = new LiveState(config.mqtt, deps.log.child({ part: 'live' }), deps.liveAll ?? false, {
      registry: () => this.registry.index,
      limits: config.live,
      now: deps.now,
    });
    this.days = new DayCache({
      storage: deps.storage,
      checkEveryMs: config.cacheTtlMs,
      maxDays: config.cacheDays,
      fleetSize: () => this.registry.index.data.devices.length,
    });
    this.profiles = profileSet(config.profiles);
    if (!this.profiles.has(config.defaultProfile))
      throw new Error(`api.defaultProfile: no profile ${config.defaultProfile}`);
    this.reports = new Reports({
      days: this.days,
      registry: this.registry,
      calendars: this.calendars,
      ttlMs: config.cacheTtlMs,
    });
    const { reports, live, days, metrics: m } = this;
    gauge(
      m,
      'cfm_api_rollup_days_loaded',
      'Rolled-up days read from InfluxDB into the day cache since start.',
      () => days.loads,
    );
    gauge(
      m,
      'cfm_api_report_loads',
      'Period rollup sums loaded from InfluxDB since start (report cache misses).',
      () => reports.loads,
    );
    gauge(
      m,
      'cfm_api_live_devices',
      'Devices whose live status the API holds (registered, and unregistered within api.live bounds).',
      () => live.stats().devices,
    );
    gauge(
      m,
      'cfm_api_live_unassigned',
      'Devices not in the registry whose live status or uplink the API holds (bounded by api.live).',
      () => live.stats().unassigned,
    );
    labelledGauge(
      m,
      'cfm_api_live_unassigned_evicted',
      'Devices not in the registry evicted from the live view since start, because their school (scope="school") or all (scope="total") were full.',
      'scope',
      () => live.stats().unassignedEvicted,
    );
    gauge(
      m,
      'cfm_api_live_rejected',
      'Live MQTT messages that failed validation since start (dropped).',
      () => live.rejected,
    );
  }

  get url(): string {
    const a = this.app?.server.address();
    return a && typeof a === 'object' ? `http://${a.address}:${a.port}` : '';
  }

  /** Adds route plugins (registered after the API's own, before listening). */
  mount(plugin: RoutePlugin): this {
    this.mounted.push(plugin);
    return this;
  }

  /** Adds a service to run in this process with the API's registry, calendars and live view. */
  cohost(service: Service, opts: { afterListen?: boolean } = {}): this {
    this.cohosted.push({ service, afterListen: opts.afterListen ?? false });
    return this;
  }

  async start(): Promise<void> {
    const { config, deps } = this;
    this.registry.load();
    this.tokens.load();
    this.loadedCalendars = loadCalendars(config.calendarFile);
    for (const c of this.cohosted) if (!c.afterListen) await c.service.start();
    await this.live.start();
    const app = await buildApp({
      registry: this.registry,
      calendars: this.calendars,
      tokens: this.tokens,
      reports: this.reports,
      profiles: this.profiles,
      defaultProfile: config.defaultProfile,
      live: this.live,
      storage: deps.storage,
      metrics: this.metrics,
      log: deps.log,
      rateLimit: config.rateLimit,
      routes: deps.routes ?? true,
    });
    for (const plugin of this.mounted) await plugin(app);
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
    for (const c of this.cohosted) if (c.afterListen) await c.service.start();
    if (config.preloadDays > 0 && (deps.routes ?? true)) {
      const today = localDate((deps.now ?? Date.now)());
      const from = dateOf(dayNumber(today) - config.preloadDays);
      const t = performance.now();
      void this.days.ensure(from, today).then(
        () => deps.log.info({ from, to: today, ms: Math.round(performance.now() - t) }, 'rollups preloaded'),
        (err: unknown) => deps.log.warn({ err }, 'preloading rollups failed; reports load them on demand'),
      );
    }
  }

  async stop(): Promise<void> {
    await this.app?.close();
    for (const c of [...this.cohosted].reverse()) await c.service.stop();
    await this.registry.stop();
    await this.live.stop();
  }
}
