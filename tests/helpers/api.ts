import type { Logger } from 'pino';
import { Registry as PromRegistry } from 'prom-client';
import { alertRoutes } from '../../alerting/routes.js';
import type { AlertService } from '../../alerting/service.js';
import { buildApp } from '../../api/app.js';
import type { TokenStore } from '../../api/tokens.js';
import type { Calendars } from '../../common/calendar.js';
import { DayCache } from '../../common/figures/days.js';
import { DEFAULT_PROFILE, profileSet } from '../../common/figures/profiles.js';
import { Reports } from '../../common/figures/reports.js';
import type { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import type { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';

/** The API app as the api process builds it, for `inject()` or a loopback listen in tests. */
export async function testApp(deps: {
  registry: RegistryStore;
  calendars: Calendars;
  tokens: TokenStore;
  storage: Storage;
  live: LiveState;
  alerts?: AlertService;
  rateLimitMax?: number;
  /** Failed authentications per address per minute (`api.rateLimit.authFailures`); default as shipped. */
  authFailures?: number;
  timeWindowMs?: number;
  log?: Logger;
}) {
  const app = await buildApp({
    registry: deps.registry,
    calendars: () => deps.calendars,
    tokens: deps.tokens,
    reports: new Reports({
      days: new DayCache({ storage: deps.storage, checkEveryMs: 60_000, maxDays: 400 }),
      registry: deps.registry,
      calendars: () => deps.calendars,
      ttlMs: 60_000,
    }),
    profiles: profileSet(),
    defaultProfile: DEFAULT_PROFILE,
    live: deps.live,
    storage: deps.storage,
    metrics: new PromRegistry(),
    log: deps.log ?? silentLogger(),
    rateLimit: {
      max: deps.rateLimitMax ?? 10_000,
      timeWindowMs: deps.timeWindowMs ?? 60_000,
      authFailures: deps.authFailures ?? 30,
    },
    routes: true,
  });
  await app.register(alertRoutes, { alerts: deps.alerts, registry: deps.registry });
  return app;
}

/** One server-sent event as it arrived: its id and name, and its data parsed as JSON. */
export interface StreamEvent<T = Record<string, unknown>> {
  id: string | undefined;
  event: string;
  data: T;
}

/**
 * An open server-sent-event stream (`/v1/bandwidth/live`) read as a browser's EventSource would: its events as
 * they arrive, until `close()`.
 */
export async function openStream<T = Record<string, unknown>>(url: string, token: string) {
  const ctrl = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: ctrl.signal });
  const events: StreamEvent<T>[] = [];
  const reader = res.body!.getReader();
  const pump = (async () => {
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const lines = buf.slice(0, i).split('\n');
        buf = buf.slice(i + 2);
        const field = (name: string) => lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
        const data = field('data');
        if (data !== undefined)
          events.push({
            id: field('id'),
            event: field('event') ?? 'message',
            data: JSON.parse(data) as T,
          });
      }
    }
  })().catch(() => undefined);
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    events,
    async close() {
      ctrl.abort();
      await pump;
    },
  };
}
