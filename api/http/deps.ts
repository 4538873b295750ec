import type { Logger } from 'pino';
import type { Registry as PromRegistry } from 'prom-client';
import type { Calendars } from '../../common/calendar.js';
import type { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/index.js';
import type { AlertService } from '../alerts/service.js';
import type { LiveState } from '../live.js';
import type { Profile } from '../profiles.js';
import type { Reports } from '../reports.js';
import type { Principal, Role, TokenStore } from '../tokens.js';

/**
 * What the routes need, handed to each route plugin as its `deps` option by `buildApp()` (api/app.ts). The
 * routes import this folder, never app.ts, so the plugins and the app that registers them do not import each
 * other.
 */
export interface AppDeps {
  /** The alerting service (absent when alerting is off). */
  alerts?: AlertService | undefined;
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
}

/**
 * The body limit of every route but the registry import (whose limit is `api.bodyLimitBytes`): the JSON
 * bodies here (a silence) are well under 1 KB, so a large body is refused with 413 before it is parsed.
 */
export const JSON_BODY_LIMIT_BYTES = 64 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
  }
  interface FastifyContextConfig {
    /** Roles allowed; absent = a public route (health, metrics, OpenAPI). */
    roles?: readonly Role[];
  }
}
