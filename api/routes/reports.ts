import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DEFAULT_IDLE_DAYS } from '../../common/figures/profiles.js';
import { parsePeriod } from '../../common/figures/reports.js';
import type { Evaluation } from '../../common/figures/results.js';
import { ApiError } from '../../common/http/errors.js';
import { effectiveScope, READ_ROLES } from '../../common/http/scope.js';
import { idSchema } from '../../contracts/ids.js';
import { DEVICE_KINDS } from '../../contracts/messages.js';
import type { AppDeps } from '../http/deps.js';
import { coverageHeader, type ReportKind, reportFile } from '../report-files.js';
import {
  classroomResultSchema as classroomBaseSchema,
  coverageSchema,
  deviceAuditSchema,
  ERROR_RESPONSES,
  formatQuery,
  pageQuery,
  periodQuery,
  periodSchema,
  regionQuery,
  rollupRowSchema as rollupRowBaseSchema,
  schoolResultSchema as schoolResultBaseSchema,
} from '../schemas.js';

// The definitions of api/README.md#definitions on top of the shared schemas: "not known" is null, never false
// or 0, and a rollup row says how many of its schools were judged.
const schoolResultSchema = schoolResultBaseSchema.extend({
  uplink: schoolResultBaseSchema.shape.uplink.extend({
    monitored: z
      .boolean()
      .nullable()
      .describe('null: not known (no rolled-up teaching day in the period, or no calendar).'),
    availabilityPct: z
      .number()
      .nullable()
      .describe('null: not measured (no rolled-up teaching day, or no uplink registered).'),
    congested: z.boolean().nullable().describe('null: no uplink readings to judge it by.'),
  }),
});
const classroomResultSchema = classroomBaseSchema.extend({
  periodsUsedPerWeek: z
    .number()
    .nullable()
    .describe('null: no teaching week measured (the school is not judged, or has no calendar).'),
});
const rollupRowSchema = rollupRowBaseSchema.extend({
  schools: z.number().describe('Every registered school of the group in scope.'),
  judgedSchools: z
    .number()
    .describe(
      'Schools judged in the period: the denominator of xxtPct, and the only schools whose classes, students, teachers and computers are counted.',
    ),
});

/** Attainment and the usage audit, as JSON or as CSV/XLSX downloads. */
export const reportRoutes: FastifyPluginAsyncZod<{ deps: AppDeps }> = async (app, { deps }) => {
  async function evaluation(
    q: { period: string; profile?: string | undefined },
    idleDays?: number,
  ): Promise<Evaluation> {
    const p = parsePeriod(q.period, deps.calendars());
    if (!p.ok) throw new ApiError(400, 'CFM_API_BAD_REQUEST', `period: ${p.message}`, 'period');
    const profileId = q.profile ?? deps.defaultProfile;
    const profile = deps.profiles.get(profileId);
    if (!profile)
      throw new ApiError(
        400,
        'CFM_API_BAD_REQUEST',
        `profile: no profile ${profileId}; one of ${[...deps.profiles.keys()].join(', ')}`,
        'profile',
      );
    return deps.reports.evaluation(p.period, profile, idleDays);
  }

  /** A report file with the coverage of the schools it covers (the scope, narrowed by `?region=`). */
  async function file<K extends ReportKind>(
    req: FastifyRequest,
    reply: FastifyReply,
    q: { format: 'csv' | 'xlsx'; region?: string | undefined },
    kind: K,
    ev: Evaluation,
    rows: Parameters<typeof reportFile<K>>[2],
  ) {
    const scope = effectiveScope(req, q.region);
    const coverage = deps.reports.coverage(ev, scope);
    const f = await reportFile(kind, q.format, rows, {
      ev,
      coverage,
      scope,
      profileName: deps.profiles.get(ev.profile)?.name ?? ev.profile,
      reg: deps.registry.index,
    });
    return reply
      .type(f.type)
      .header('content-disposition', `attachment; filename="${f.filename}"`)
      .header('x-cfm-coverage', coverageHeader(coverage))
      .send(f.body);
  }

  const inScope = (req: FastifyRequest, region: string | undefined) => {
    const scope = effectiveScope(req, region);
    const reg = deps.registry.index;
    return (school: string) => reg.schoolInScope(school, scope);
  };

  const head = { period: periodSchema, profile: z.string(), coverage: coverageSchema };
  const attainmentResponse = z.object({ ...head, rollups: z.array(rollupRowSchema) });

  app.get(
    '/v1/attainment',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: '校校通/班班通 attainment rolled up per region in scope (total, urban/rural, school level).',
        querystring: z.object({ ...periodQuery, ...regionQuery, ...formatQuery }),
        response: { 200: attainmentResponse, ...ERROR_RESPONSES },
      },
    },
    async (req, reply) => {
      const ev = await evaluation(req.query);
      const scope = effectiveScope(req, req.query.region);
      const rows = deps.reports.rollups(ev, scope);
      if (req.query.format !== 'json')
        return file(req, reply, { ...req.query, format: req.query.format }, 'attainment', ev, rows);
      // The city view is what every dashboard polls: its JSON is encoded once through the response schema
      // (so it still carries only the listed fields) and then served as text until the figures change.
      const text = deps.reports.memo(ev, `attainment|${scope ?? ''}`, () =>
        JSON.stringify(
          attainmentResponse.encode({
            period: ev.period,
            profile: ev.profile,
            coverage: deps.reports.coverage(ev, scope),
            rollups: rows,
          }),
        ),
      );
      return reply.type('application/json; charset=utf-8').send(text as never);
    },
  );

  app.get(
    '/v1/attainment/schools',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: '校校通 per school with reasons, and its 班班通 class counts.',
        querystring: z.object({
          ...periodQuery,
          ...regionQuery,
          ...formatQuery,
          ...pageQuery,
          attained: z
            .enum(['true', 'false'])
            .optional()
            .describe('Only attained (true) or not attained (false) schools.'),
        }),
        response: {
          200: z.object({ ...head, total: z.number(), items: z.array(schoolResultSchema) }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const ev = await evaluation(q);
      const visible = inScope(req, q.region);
      const rows = ev.schools.filter(
        (s) => visible(s.id) && (q.attained === undefined || String(s.xxt.attained) === q.attained),
      );
      if (q.format !== 'json') return file(req, reply, { ...q, format: q.format }, 'schools', ev, rows);
      const items = rows.slice((q.page - 1) * q.pageSize, q.page * q.pageSize);
      const coverage = deps.reports.coverage(ev, effectiveScope(req, q.region));
      return { period: ev.period, profile: ev.profile, coverage, total: rows.length, items };
    },
  );

  app.get(
    '/v1/attainment/classrooms',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary:
          '班班通 per class room with reasons, and its use: hours on, in use, on but unused and left on, periods used, per teaching week, use basis.',
        querystring: z.object({
          ...periodQuery,
          ...regionQuery,
          ...formatQuery,
          ...pageQuery,
          school: idSchema.optional(),
        }),
        response: {
          200: z.object({ ...head, total: z.number(), items: z.array(classroomResultSchema) }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const ev = await evaluation(q);
      const visible = inScope(req, q.region);
      const rows = ev.classrooms.filter((c) => visible(c.school) && (!q.school || c.school === q.school));
      if (q.format !== 'json') return file(req, reply, { ...q, format: q.format }, 'classrooms', ev, rows);
      const items = rows.slice((q.page - 1) * q.pageSize, q.page * q.pageSize);
      const coverage = deps.reports.coverage(ev, effectiveScope(req, q.region));
      return { period: ev.period, profile: ev.profile, coverage, total: rows.length, items };
    },
  );

  const auditQuery = z.object({
    ...periodQuery,
    ...regionQuery,
    ...formatQuery,
    ...pageQuery,
    school: idSchema.optional(),
    kind: z.enum(DEVICE_KINDS).optional(),
    idleDays: z.coerce
      .number()
      .int()
      .min(1)
      .max(120)
      .optional()
      .describe(
        `Idle after this many rolled-up teaching days unused. Default: the profile's idleDays — DEFAULT_IDLE_DAYS (${DEFAULT_IDLE_DAYS}) in the built-in profiles and in any profile that sets none.`,
      ),
  });
  const auditResponse = {
    200: z.object({
      ...head,
      lookbackFrom: z
        .string()
        .describe(
          'lastUsed and idleTeachingDays look back to this date (far enough for idleDays teaching days by every calendar); lastUsed null: not used since.',
        ),
      idleDays: z.number().describe("The idle threshold applied: ?idleDays=, else the profile's idleDays."),
      total: z.number(),
      items: z.array(deviceAuditSchema),
    }),
    ...ERROR_RESPONSES,
  };
  const audit =
    (onlyIdle: boolean) =>
    async (req: FastifyRequest<{ Querystring: z.infer<typeof auditQuery> }>, reply: FastifyReply) => {
      const q = req.query;
      const ev = await evaluation(q, q.idleDays);
      const visible = inScope(req, q.region);
      const rows = ev.devices.filter(
        (d) =>
          visible(d.school) &&
          (!q.school || d.school === q.school) &&
          (!q.kind || d.kind === q.kind) &&
          (!onlyIdle || d.idle),
      );
      if (q.format !== 'json')
        return file(req, reply, { ...q, format: q.format }, onlyIdle ? 'idle' : 'usage', ev, rows);
      const items = rows.slice((q.page - 1) * q.pageSize, q.page * q.pageSize);
      return {
        period: ev.period,
        profile: ev.profile,
        coverage: deps.reports.coverage(ev, effectiveScope(req, q.region)),
        lookbackFrom: ev.lookbackFrom,
        idleDays: ev.idleDays,
        total: rows.length,
        items,
      };
    };
  app.get(
    '/v1/audit/devices',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary:
          'Usage audit per device: in teaching time hours on, in use and on but unused, periods used, used hours per teaching week, days used ÷ teaching days; hours left on outside teaching time; what its use rests on (activity or power). api/README.md, Definitions 8.',
        querystring: auditQuery,
        response: auditResponse,
      },
    },
    audit(false),
  );
  app.get(
    '/v1/audit/idle',
    {
      config: { roles: READ_ROLES },
      schema: {
        summary: 'Idle equipment: unused for at least idleDays teaching days, with purchase batch.',
        querystring: auditQuery,
        response: auditResponse,
      },
    },
    audit(true),
  );
};
