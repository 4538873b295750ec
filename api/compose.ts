import type { Logger } from 'pino';
import { z } from 'zod';
import { alertsConfigSchema } from '../alerting/config.js';
import { alertRoutes } from '../alerting/routes.js';
import { AlertService, registerAlertMetrics } from '../alerting/service.js';
import type { processConfigSchema } from '../common/cli.js';
import type { Service } from '../common/lifecycle.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import { type RollupConfig, rollupConfigSchema, rollupFields } from '../rollup/config.js';
import { RollupService } from '../rollup/service.js';
import { API_CONFIG_DESCRIPTION, API_CONFIG_REFINE, API_CONFIG_SHAPE, ApiServer } from './server.js';

/**
 * The composition root of the API process family: which services run in one process
 * (docs/deploy-scale-out.md, "API").
 *
 * | role     | runs                                                     | deployment                                |
 * | -------- | -------------------------------------------------------- | ----------------------------------------- |
 * | `all`    | the API, alerting and the rollups (as before #14)         | the quickstart, one machine (the default) |
 * | `api`    | the API only: stateless, any number behind a balancer;    | scaled: N instances                        |
 * |          | alert routes forwarded to `api.alertsUrl`                |                                           |
 * | `worker` | alerting and the rollups, with the alert routes, health   | scaled: exactly one                        |
 * |          | and metrics over HTTP                                     |                                           |
 */
export const PROCESS_ROLES = ['all', 'api', 'worker'] as const;
export type ProcessRole = (typeof PROCESS_ROLES)[number];

/** The `api` section as this process family reads it: with the deprecated `api.rollup` (see rollupConfigOf). */
const apiSectionSchema = z
  .strictObject({
    ...API_CONFIG_SHAPE,
    rollup: z
      .strictObject(rollupFields)
      .optional()
      .describe(
        'Deprecated: the top-level `rollup` section (its own since #14). Still read when given here — it then replaces `rollup` whole, with a warning at start.',
      ),
  })
  .refine(...API_CONFIG_REFINE)
  .prefault({})
  .describe(API_CONFIG_DESCRIPTION);

/** The config sections the API process family reads. */
export const API_SECTIONS = {
  influx: influxConfigSchema,
  api: apiSectionSchema,
  alerts: alertsConfigSchema,
  rollup: rollupConfigSchema,
};
export type ApiProcessConfig = z.output<ReturnType<typeof processConfigSchema<typeof API_SECTIONS>>>;

/** The rollup section in force: the deprecated `api.rollup` when given (it wins, with a warning), else `rollup`. */
export function rollupConfigOf(c: Pick<ApiProcessConfig, 'api' | 'rollup'>, log?: Logger): RollupConfig {
  if (c.api.rollup === undefined) return c.rollup;
  log?.warn('api.rollup is deprecated: move its keys to the top-level `rollup:` section');
  return c.api.rollup;
}

export interface ApiProcess {
  storage: Storage;
  /** The HTTP host (every role has one: a worker serves its alert routes, health and metrics). */
  server: ApiServer;
  alerts: AlertService | undefined;
  rollup: RollupService | undefined;
  /** In start order. */
  services: Service[];
}

/** Builds the services of one process of the given role. */
export function composeApiProcess(
  role: ProcessRole,
  c: Pick<ApiProcessConfig, 'influx' | 'api' | 'alerts' | 'rollup'>,
  log: Logger,
  opts: {
    now?: () => number;
    /** A storage the caller starts and stops (the quickstart's, shared with its collector); default: own. */
    storage?: Storage;
  } = {},
): ApiProcess {
  const storage = opts.storage ?? new Storage(c.influx, { log });
  const runsWorkers = role !== 'api';
  const alerting = runsWorkers && c.alerts.enabled;
  const rollupConfig = rollupConfigOf(c, log);
  const server = new ApiServer(c.api, {
    log,
    storage,
    routes: role !== 'worker',
    liveAll: alerting,
    ...(opts.now ? { now: opts.now } : {}),
  });
  const alerts = alerting
    ? new AlertService(c.alerts, {
        log: log.child({ part: 'alerts' }),
        storage,
        registry: server.registry,
        calendars: server.calendars,
        live: server.live,
        ...(opts.now ? { now: opts.now } : {}),
      })
    : undefined;
  if (runsWorkers) registerAlertMetrics(server.metrics, alerts);
  if (alerts) server.cohost({ name: 'alerts', start: async () => alerts.start(), stop: () => alerts.stop() });
  // Constructed when disabled too (it then does not run): its metrics are exported as before, at 0.
  const rollup = runsWorkers
    ? new RollupService(rollupConfig, {
        storage,
        registry: server.registry,
        calendars: server.calendars,
        reports: server.reports,
        profiles: () => server.profiles.values(),
        log: log.child({ part: 'rollup' }),
        metrics: server.metrics,
        ...(opts.now ? { now: opts.now } : {}),
      })
    : undefined;
  // After listening, as before #14: a port in use stops the start before a rollup run begins.
  if (rollup) server.cohost(rollup, { afterListen: true });
  // An instance of a scaled deployment forwards the alert routes to the worker; the others serve their own
  // (answering 404 "not enabled" when alerting is off).
  const forwardTo = role === 'api' ? c.api.alertsUrl : undefined;
  if (role === 'api' && !forwardTo)
    log.warn('api.alertsUrl is not set: the alert routes answer 404 (set it to the worker’s URL)');
  if (role !== 'api' && c.api.alertsUrl)
    log.warn({ role }, 'api.alertsUrl is read only with --role api: ignored');
  server.mount(async (app) => {
    await app.register(alertRoutes, {
      alerts,
      registry: server.registry,
      ...(forwardTo ? { forwardTo } : {}),
      ...(role === 'api'
        ? { disabled: 'alerting runs in the worker of this deployment: set api.alertsUrl to its URL' }
        : {}),
    });
  });
  const storageService: Service = {
    name: 'storage',
    start: async () => void (await storage.start()),
    stop: () => storage.stop(),
  };
  return { storage, server, alerts, rollup, services: opts.storage ? [server] : [storageService, server] };
}
