import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ApiError } from '../common/http/errors.js';
import { forward } from '../common/http/forward.js';
import { ERROR_RESPONSES, regionQuery } from '../common/http/schemas.js';
import { effectiveScope, READ_ROLES } from '../common/http/scope.js';
import type { RegistryStore } from '../common/registry/store.js';
import { idSchema, regionPathSchema, regionWithin } from '../contracts/ids.js';
import type { Alert } from './engine.js';
import { RULE_NAMES } from './rules.js';
import type { AlertService } from './service.js';
import { alertSchema, deliveryRecordSchema, silenceSchema } from './state.js';

// The API's views of what the state file holds: the same schemas, fewer fields.
const alertOut = alertSchema.pick({
  id: true,
  rule: true,
  severity: true,
  state: true,
  school: true,
  device: true,
  subject: true,
  message: true,
  startedAtMs: true,
  firingAtMs: true,
  resolvedAtMs: true,
  notifiedAtMs: true,
  ackedAtMs: true,
  ackedBy: true,
  flapping: true,
  inhibitedBy: true,
  affected: true,
});
const silenceOut = z.object(silenceSchema.shape);
const deliveryOut = deliveryRecordSchema.pick({
  id: true,
  channel: true,
  school: true,
  title: true,
  createdAtMs: true,
  attempts: true,
  status: true,
  lastError: true,
});

export interface AlertRoutesOptions {
  /** The alerting service; absent: alerting is off, and every route answers 404 saying so. */
  alerts: AlertService | undefined;
  /** Where a school lies (scopes) and what a silence may name. */
  registry: RegistryStore;
  /**
   * A scaled deployment's API instance: the URL of the worker that runs alerting. Each route still
   * authenticates and validates here, then the worker answers (common/http/forward.ts).
   */
  forwardTo?: string;
  /** Why the routes answer 404 when `alerts` is absent (default: alerting is not enabled). */
  disabled?: string;
}

/**
 * Active alerts, history, acknowledgement, silences and the delivery log — all scoped by region. A Fastify
 * plugin for a host that authenticates (`request.principal`, common/http/principal.ts) and answers `ApiError`s.
 */
export const alertRoutes: FastifyPluginAsyncZod<AlertRoutesOptions> = async (app, deps) => {
  const { forwardTo } = deps;
  if (forwardTo)
    // Encapsulated in this plugin: only its routes are forwarded, once authenticated and validated.
    app.addHook('preHandler', (req, reply) =>
      forward(forwardTo, req, reply, { what: 'the alerting worker (api.alertsUrl)' }),
    );
  const service = () => {
    if (!deps.alerts)
      throw new ApiError(
        404,
        'CFM_API_NOT_FOUND',
        deps.disabled ?? 'alerting is not enabled (alerts.enabled)',
      );
    return deps.alerts;
  };
  const visible = (req: FastifyRequest, region: string | undefined) => {
    const scope = effectiveScope(req, region);
    const reg = deps.registry.index;
    return (a: Pick<Alert, 'school'>) => scope === undefined || reg.schoolInScope(a.school, scope);
  };

  app.get(
    '/v1/alerts',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: 'Active alerts (pending and firing) in scope.',
        querystring: z.object({ ...regionQuery }),
        response: { 200: z.object({ items: z.array(alertOut) }), ...ERROR_RESPONSES },
      },
    },
    async (req) => {
      const ok = visible(req, req.query.region);
      return {
        items: [...service().engine.active.values()].filter(ok).sort((a, b) => b.startedAtMs - a.startedAtMs),
      };
    },
  );

  app.get(
    '/v1/alerts/history',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: 'Resolved alerts in scope, newest first.',
        querystring: z.object({
          ...regionQuery,
          limit: z.coerce.number().int().min(1).max(5_000).default(200),
        }),
        response: { 200: z.object({ items: z.array(alertOut) }), ...ERROR_RESPONSES },
      },
    },
    async (req) => {
      const ok = visible(req, req.query.region);
      return { items: service().engine.history.filter(ok).reverse().slice(0, req.query.limit) };
    },
  );

  app.post(
    '/v1/alerts/:id/ack',
    {
      config: { roles: ['admin', 'ops'] },
      schema: {
        summary:
          'Acknowledge an alert by its id (URL-safe, e.g. uplink_down-3f2a9c0e51b7d48a6c21): no more reminders (the resolve is still sent).',
        params: z.object({ id: z.string().min(1).max(300) }),
        response: { 200: alertOut, ...ERROR_RESPONSES },
      },
    },
    async (req) => {
      const s = service();
      const ok = visible(req, undefined);
      const a = [...s.engine.active.values()].find((x) => x.id === req.params.id);
      if (!a || !ok(a))
        throw new ApiError(404, 'CFM_API_NOT_FOUND', `no active alert ${req.params.id}`, 'id');
      s.engine.ack(a.id, req.principal!.name, Date.now());
      s.save(true);
      return a;
    },
  );

  app.get(
    '/v1/silences',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: 'Silences in force or to come, within scope.',
        response: { 200: z.object({ items: z.array(silenceOut) }), ...ERROR_RESPONSES },
      },
    },
    async (req) => {
      const scope = effectiveScope(req, undefined);
      const now = Date.now();
      const items = service().silences.filter(
        (s) =>
          s.endsAtMs > now &&
          (scope === undefined || (s.region !== undefined && regionWithin(s.region, scope))),
      );
      return { items };
    },
  );

  app.post(
    '/v1/silences',
    {
      config: { roles: ['admin', 'ops'] },
      schema: {
        summary:
          'Silence notifications matching region/school/device/rule for a while (alerts are still tracked). A device is named with its school.',
        body: z.strictObject({
          region: regionPathSchema
            .optional()
            .describe('A region path or bare division code of the registry, within the token scope.'),
          school: idSchema.optional(),
          device: idSchema.optional(),
          rule: z.enum(RULE_NAMES).optional(),
          minutes: z
            .number()
            .int()
            .min(1)
            .max(60 * 24 * 31),
          comment: z.string().min(1).max(500),
        }),
        response: { 201: silenceOut, ...ERROR_RESPONSES },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const scope = effectiveScope(req, b.region);
      const reg = deps.registry.index;
      // Device ids are unique only within a school: a device alone would silence every school's namesake.
      if (b.device && !b.school)
        throw new ApiError(
          400,
          'CFM_API_BAD_REQUEST',
          'device: give its school too (device ids are unique only within a school)',
          'school',
        );
      if (b.school && !reg.schoolInScope(b.school, scope))
        throw new ApiError(
          403,
          'CFM_API_OUT_OF_SCOPE',
          `school ${b.school} is outside this token's scope`,
          'school',
        );
      // A scoped token's silence is always bounded by its scope, whatever else it matches; a bare division code is
      // kept as the path it names (what silences match on).
      const region = scope;
      const now = Date.now();
      const s = service().addSilence({
        createdBy: req.principal!.name,
        comment: b.comment,
        ...(region ? { region } : {}),
        ...(b.school ? { school: b.school } : {}),
        ...(b.device ? { device: b.device } : {}),
        ...(b.rule ? { rule: b.rule } : {}),
        startsAtMs: now,
        endsAtMs: now + b.minutes * 60_000,
      });
      service().save(true);
      return reply.code(201).send(s);
    },
  );

  app.delete(
    '/v1/silences/:id',
    {
      config: { roles: ['admin', 'ops'] },
      schema: {
        summary: 'End a silence.',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: z.object({ status: z.literal('ok') }), ...ERROR_RESPONSES },
      },
    },
    async (req) => {
      const s = service();
      const scope = effectiveScope(req, undefined);
      const silence = s.silences.find((x) => x.id === req.params.id);
      if (!silence || (scope !== undefined && !(silence.region && regionWithin(silence.region, scope))))
        throw new ApiError(404, 'CFM_API_NOT_FOUND', `no silence ${req.params.id}`, 'id');
      s.removeSilence(silence.id);
      s.save(true);
      return { status: 'ok' as const };
    },
  );

  app.get(
    '/v1/alerts/deliveries',
    {
      config: { roles: ['admin', 'ops'] },
      schema: {
        summary: 'Recent notification deliveries (failed ones with their last error), within scope.',
        querystring: z.object({ status: z.enum(['pending', 'delivered', 'failed']).optional() }),
        response: {
          200: z.object({ items: z.array(deliveryOut) }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req) => {
      const ok = visible(req, undefined);
      const items = service()
        .deliverer.records.filter((d) => ok(d) && (!req.query.status || d.status === req.query.status))
        .reverse();
      return { items };
    },
  );
};
