import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { READ_ROLES } from '../../common/http/scope.js';
import { LABELS } from '../../contracts/labels.js';
import type { AppDeps } from '../http/deps.js';
import { ERROR_RESPONSES } from '../schemas.js';

/** Health, metrics, the OpenAPI document and the profile list. */
export const systemRoutes: FastifyPluginAsyncZod<{ deps: AppDeps }> = async (app, { deps }) => {
  const started = Date.now();
  // Load balancers poll /health often: InfluxDB is pinged at most once a second.
  let lastPing: { atMs: number; result: Promise<{ ok: boolean; latencyMs: number | null }> } | undefined;
  const ping = () => {
    const now = Date.now();
    if (!lastPing || now - lastPing.atMs >= 1_000) {
      const t = performance.now();
      lastPing = {
        atMs: now,
        result: deps.storage.ping().then(
          () => ({ ok: true, latencyMs: Math.round((performance.now() - t) * 10) / 10 }),
          () => ({ ok: false, latencyMs: null }),
        ),
      };
    }
    return lastPing.result;
  };
  app.get(
    '/health',
    {
      schema: {
        summary: 'Liveness and dependencies (no token needed).',
        security: [],
        response: {
          200: z.object({
            status: z.enum(['ok', 'degraded']),
            influx: z.object({ ok: z.boolean(), latencyMs: z.number().nullable() }),
            mqtt: z.object({ configured: z.boolean(), connected: z.boolean() }),
            registry: z.object({
              error: z.string().nullable().describe('Why the registry file could not be re-read, if so.'),
              schools: z.number(),
              classrooms: z.number(),
              devices: z.number(),
              version: z.number(),
            }),
            tokens: z.object({
              error: z
                .string()
                .nullable()
                .describe(
                  'Why the token file could not be re-read, if so (the tokens read before stay in force).',
                ),
            }),
            uptimeS: z.number(),
          }),
        },
      },
    },
    async () => {
      const influx = await ping();
      const reg = deps.registry.index.data;
      const mqttConfigured = deps.live.configured;
      const registryError = deps.registry.lastError?.message ?? null;
      deps.tokens.check();
      const tokensError = deps.tokens.lastError?.message ?? null;
      return {
        status:
          influx.ok && (!mqttConfigured || deps.live.connected) && !registryError && !tokensError
            ? ('ok' as const)
            : ('degraded' as const),
        influx,
        mqtt: { configured: mqttConfigured, connected: deps.live.connected },
        registry: {
          error: registryError,
          schools: reg.schools.length,
          classrooms: reg.classrooms.length,
          devices: reg.devices.length,
          version: deps.registry.version,
        },
        tokens: { error: tokensError },
        uptimeS: Math.round((Date.now() - started) / 1000),
      };
    },
  );

  app.get(
    '/metrics',
    { schema: { summary: 'Prometheus metrics (no token needed).', security: [], hide: true } },
    async (_req, reply) => {
      reply.type(deps.metrics.contentType);
      return deps.metrics.metrics();
    },
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // The built-in overview for people without Grafana: a static page (no token needed to load it; it asks for
  // one, or takes it from the link's #fragment, and reads the API with it). Strict CSP: only itself.
  // The labels it shows come from contracts/labels.ts, as the console's and the report files' do: filled into
  // its data block (JSON, not run; `<` escaped so it cannot close the element).
  const overview = readFileSync(new URL('../overview.html', import.meta.url), 'utf8').replace(
    '<script type="application/json" id="labels">{}</script>',
    () =>
      `<script type="application/json" id="labels">${JSON.stringify({
        uplinkState: LABELS.uplinkState,
        deviceKind: LABELS.deviceKind,
      }).replace(/</g, '\\u003c')}</script>`,
  );
  const script = /<script>([\s\S]*?)<\/script>/.exec(overview)?.[1] ?? '';
  const scriptHash = createHash('sha256').update(script).digest('base64');
  app.get('/overview', { schema: { hide: true } }, async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header(
        'content-security-policy',
        `default-src 'none'; script-src 'sha256-${scriptHash}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      )
      .header('referrer-policy', 'no-referrer')
      .send(overview),
  );
  // The console (console/): a static page and its bundle (built by `npm run gen:console`, committed). No token
  // is needed to load them; the page asks for one and reads the API with it. Strict CSP: only this origin, no
  // inline script or style.
  // A checkout without the bundle (console/dist removed) still serves the API: the console says how to build it.
  const consoleFile = (name: string) => {
    try {
      return readFileSync(new URL(`../../console/${name}`, import.meta.url));
    } catch (err) {
      deps.log.warn({ err, file: `console/${name}` }, 'the console is not built: run npm run gen:console');
      return Buffer.from(
        name.endsWith('.js') ? 'document.body.textContent = "控制台未构建：npm run gen:console";' : '',
      );
    }
  };
  // Exactly these three, each a route of its own: no name from the request is looked up in a table or on the
  // disk, so `../`, encoded or not, a null byte, a long or unknown name or `constructor` is the API's 404
  // (tests/console/serve.test.ts).
  const CONSOLE: [path: string, body: Buffer, type: string][] = [
    ['/console/', consoleFile('index.html'), 'text/html; charset=utf-8'],
    ['/console/app.js', consoleFile('dist/app.js'), 'text/javascript; charset=utf-8'],
    ['/console/app.css', consoleFile('dist/app.css'), 'text/css; charset=utf-8'],
  ];
  const CONSOLE_CSP =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  app.get('/console', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/'));
  for (const [path, body, type] of CONSOLE)
    app.get(path, { schema: { hide: true } }, async (_req, reply) =>
      reply
        .type(type)
        .header('content-security-policy', CONSOLE_CSP)
        .header('referrer-policy', 'no-referrer')
        .header('x-content-type-options', 'nosniff')
        .header('cache-control', 'no-cache')
        .send(body),
    );
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/'));

  app.get(
    '/v1/profiles',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: 'The standard profiles attainment can be judged by, with the source of each threshold.',
        response: {
          200: z.object({
            default: z.string(),
            items: z.array(
              z.object({
                id: z.string(),
                version: z.string(),
                name: z.string(),
                perClassMbps: z.object({ urban: z.number(), rural: z.number() }),
                minUplinkMbps: z.number(),
                minUplinkAvailabilityPct: z.number(),
                congestionPct: z.number(),
                minUsePeriodsPerWeek: z.number(),
                minOnlineDaysPct: z.number(),
                maxFaultyPct: z.number(),
                idleDays: z.number(),
                sources: z.record(z.string(), z.string()),
              }),
            ),
          }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async () => ({ default: deps.defaultProfile, items: [...deps.profiles.values()] }),
  );
};
