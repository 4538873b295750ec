import type { Logger } from 'pino';
import type { Registry as PromRegistry } from 'prom-client';
import type { Calendars } from '../../common/calendar.js';
import type { Profile } from '../../common/figures/profiles.js';
import type { Reports } from '../../common/figures/reports.js';
import type { LiveState } from '../../common/live.js';
import type { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/index.js';
import type { TokenStore } from '../tokens.js';

/**
 * What the routes need, handed to each route plugin as its `deps` option by `buildApp()` (api/app.ts). The
 * routes import this folder, never app.ts, so the plugins and the app that registers them do not import each
 * other.
 */
export interface AppDeps {
  registry: RegistryStore;
  calendars: () => Calendars;
  tokens: TokenStore;
  reports: Reports;
  profiles: Map<string, Profile>;
  defaultProfile: string;
  live: LiveState;
  storage: Storage;
  metrics: PromRegistry;
  log: Logger;
  rateLimit: { max: number; timeWindowMs: number; authFailures: number };
  /** Serve the fleet, report and registry routes (false: only health, metrics and mounted plugins). */
  routes: boolean;
}

/**
 * The body limit of every route but the registry import (whose limit is `api.bodyLimitBytes`): the JSON
 * bodies here (a silence) are well under 1 KB, so a large body is refused with 413 before it is parsed.
 */
export const JSON_BODY_LIMIT_BYTES = 64 * 1024;
