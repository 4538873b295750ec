import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyRequest, LogController } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { Counter } from 'prom-client';
import { addressKey, FailureLimiter } from '../common/failure-limit.js';
import { ApiError, sendError } from '../common/http/errors.js';
import { type AppDeps, JSON_BODY_LIMIT_BYTES } from './http/deps.js';
import { fleetRoutes } from './routes/fleet.js';
import { historyRoutes } from './routes/history.js';
import { registryRoutes } from './routes/registry.js';
import { reportRoutes } from './routes/reports.js';
import { systemRoutes } from './routes/system.js';

/**
 * The API: `buildApp()` wires plugins and routes and never listens, so tests use `inject()` or listen on a free
 * loopback port themselves. Design: api/README.md.
 */
export async function buildApp(deps: AppDeps) {
  const app = Fastify({
    loggerInstance: deps.log,
    bodyLimit: JSON_BODY_LIMIT_BYTES,
    // Behind a reverse proxy the client address comes from X-Forwarded-For; set it there, not here.
    trustProxy: false,
    // Per-request lines would drown the log at city scale; latency per route is in /metrics instead.
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('principal', undefined);
  // `?region=` is resolved against the registry as it is now (an import swaps the index).
  app.decorateRequest('regionIndex', {
    getter: () => deps.registry.index,
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof ApiError)
      return sendError(reply, err.statusCode, err.code, err.message, err.field, err.issues, err.limit);
    if (hasZodFastifySchemaValidationErrors(err)) {
      const v = err.validation[0]!;
      const part = (err as { validationContext?: string }).validationContext ?? 'request';
      const field = [
        ...v.instancePath.split('/').filter(Boolean),
        ...((v.params as { issue?: { path?: unknown[] } }).issue?.path ?? []),
      ]
        .map(String)
        .filter((x, i, a) => a.indexOf(x) === i);
      const name = field.join('.') || (v.params as { missingProperty?: string }).missingProperty || part;
      return sendError(reply, 400, 'CFM_API_BAD_REQUEST', `${part} ${name}: ${v.message ?? 'invalid'}`, name);
    }
    if (isResponseSerializationError(err)) {
      req.log.error({ err: err.cause, url: req.url }, 'response did not match its schema');
      return sendError(reply, 500, 'CFM_API_INTERNAL', 'internal error');
    }
    const status = (err as { statusCode?: number }).statusCode ?? 500;
    const message = (err as Error).message;
    if (status === 413) {
      // Fastify's own body limit (FST_ERR_CTP_BODY_TOO_LARGE): refused before the body is read or parsed.
      const url = req.routeOptions.url ?? req.url.split('?')[0];
      const value = req.routeOptions.bodyLimit ?? JSON_BODY_LIMIT_BYTES;
      const name =
        url === '/v1/registry/import' ? 'api.bodyLimitBytes' : `the body limit of ${req.method} ${url}`;
      return sendError(
        reply,
        413,
        'CFM_API_TOO_LARGE',
        `the request body is larger than ${value} bytes; the limit is ${name} = ${value}`,
        undefined,
        undefined,
        { name, value },
      );
    }
    if (status === 429) return sendError(reply, 429, 'CFM_API_RATE_LIMITED', message);
    if (status >= 400 && status < 500) return sendError(reply, status, 'CFM_API_BAD_REQUEST', message);
    if ((err as { code?: string }).code?.startsWith('CFM_STORAGE')) {
      req.log.warn({ err }, 'storage unavailable');
      return sendError(reply, 503, 'CFM_API_UNAVAILABLE', 'InfluxDB did not answer; retry later');
    }
    req.log.error({ err, url: req.url }, 'request failed');
    return sendError(reply, 500, 'CFM_API_INTERNAL', 'internal error');
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, 404, 'CFM_API_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`),
  );

  // Failed authentications never reach the per-token limiter below (there is no token to key on): they are
  // limited per client address here. A valid token is always checked and served, also from a limited address —
  // a SHA-256 costs nothing, and a 256-bit token cannot be guessed however many tries are allowed, so the limit
  // is about cost and visibility, and must not let a wrong token behind the same NAT lock operators out.
  const authFailures = new FailureLimiter({
    max: deps.rateLimit.authFailures,
    windowMs: deps.rateLimit.timeWindowMs,
  });
  const authFailuresTotal =
    (deps.metrics.getSingleMetric('cfm_api_auth_failures_total') as Counter<'outcome'> | undefined) ??
    new Counter({
      name: 'cfm_api_auth_failures_total',
      help: 'Requests without a valid token, by answer: refused (401) or limited (429, the address failed too often).',
      labelNames: ['outcome'],
      registers: [deps.metrics],
    });

  // Authentication first (onRequest), so the rate limiter (preHandler) can key on the token.
  app.addHook('onRequest', async (req, reply) => {
    const roles = req.routeOptions.config.roles;
    if (!roles) return;
    const h = req.headers.authorization;
    const m = h ? /^Bearer\s+(\S+)$/i.exec(h) : null;
    const principal = m ? deps.tokens.verify(m[1]!) : undefined;
    if (!principal) {
      const address = addressKey(req.ip);
      const waitMs = authFailures.limitedForMs(address);
      if (waitMs > 0) {
        authFailuresTotal.inc({ outcome: 'limited' });
        const retryS = Math.ceil(waitMs / 1000);
        reply.header('retry-after', String(retryS));
        throw new ApiError(
          429,
          'CFM_API_AUTH_LIMITED',
          `too many failed authentications from this address; retry in ${retryS} s`,
        );
      }
      authFailuresTotal.inc({ outcome: 'refused' });
      if (authFailures.fail(address))
        deps.log.warn(
          { address, failures: deps.rateLimit.authFailures, windowMs: deps.rateLimit.timeWindowMs },
          'failed authentications from one address: answering 429 until its window ends (valid tokens still served)',
        );
      throw new ApiError(401, 'CFM_API_UNAUTHENTICATED', 'a valid bearer token is required');
    }
    if (!roles.includes(principal.role))
      throw new ApiError(403, 'CFM_API_FORBIDDEN', `role ${principal.role} may not use this route`);
    req.principal = principal;
  });
  await app.register(rateLimit, {
    global: true,
    hook: 'preHandler',
    max: deps.rateLimit.max,
    timeWindow: deps.rateLimit.timeWindowMs,
    keyGenerator: (req: FastifyRequest) => req.principal?.tokenId ?? req.ip,
    allowList: (req: FastifyRequest) => req.routeOptions.config.roles === undefined, // health, metrics
    errorResponseBuilder: (_req: FastifyRequest, ctx: { after: string }) =>
      new ApiError(429, 'CFM_API_RATE_LIMITED', `rate limit exceeded, retry in ${ctx.after}`),
  });
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'campus fleet monitor API',
        description:
          'Fleet, live bandwidth, 校校通/班班通 attainment and the equipment-usage audit. See api/README.md.',
        version: '1',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  await app.register(systemRoutes, { deps });
  if (deps.routes) {
    await app.register(fleetRoutes, { deps });
    await app.register(reportRoutes, { deps });
    await app.register(registryRoutes, { deps });
    await app.register(historyRoutes, { deps });
  }
  return app;
}

export type ApiApp = Awaited<ReturnType<typeof buildApp>>;
/** Registers more routes on the app (another service's plugin), before it listens. */
export type RoutePlugin = (app: ApiApp) => Promise<unknown>;
