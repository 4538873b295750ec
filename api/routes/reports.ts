import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RollupRow } from '../../common/figures/regions.js';
import { parsePeriod } from '../../common/figures/reports.js';
import type {
  ClassroomResult,
  DeviceAudit,
  Evaluation,
  Reason,
  SchoolResult,
} from '../../common/figures/results.js';
import { ApiError } from '../../common/http/errors.js';
import { effectiveScope, READ_ROLES } from '../../common/http/scope.js';
import { idSchema } from '../../contracts/ids.js';
import { type LabelTable, labelOf } from '../../contracts/labels.js';
import { DEVICE_KINDS } from '../../contracts/messages.js';
import { CONTENT_TYPES, type ExportColumn, toCsv, toXlsx } from '../export.js';
import type { AppDeps } from '../http/deps.js';
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

/**
 * Enumerations and reasons in files: the Chinese label (contracts/labels.ts) under the header, then its stable
 * code in a column of its own, headed the same plus 代码 — `城乡` 农村, `城乡代码` rural. Several reasons are
 * joined by `；` (labels) and `;` (codes), in the same order.
 */
function coded<T>(header: string, table: LabelTable, codes: (row: T) => string | readonly string[]) {
  const list = (r: T) => [codes(r)].flat();
  return [
    {
      header,
      value: (r: T) =>
        list(r)
          .map((c) => labelOf(table, c))
          .join('；'),
    },
    { header: `${header}代码`, value: (r: T) => list(r).join(';') },
  ] satisfies ExportColumn<T>[];
}
/** The reasons as labels and codes, then their messages: the figures behind each (`原因说明`). */
function reasonColumns<T>(reasons: (row: T) => readonly Reason[]): ExportColumn<T>[] {
  return [
    ...coded<T>('未达标原因', 'reason', (r) => reasons(r).map((x) => x.code)),
    {
      header: '原因说明',
      value: (r) =>
        reasons(r)
          .map((x) => x.message)
          .join('; '),
    },
  ];
}
const verdict = (b: boolean | null) => labelOf('verdict', String(b));
/** A rollup row's group: `all`, an area or a school level. */
const groupTable = (split: RollupRow['split']): LabelTable =>
  split === 'all' ? 'split' : split === 'area' ? 'area' : 'schoolLevel';

const ROLLUP_COLUMNS: ExportColumn<RollupRow>[] = [
  { header: '区域代码', value: (r) => r.region },
  { header: '区域', value: (r) => r.regionName },
  ...coded<RollupRow>('区域级别', 'regionLevel', (r) => r.regionLevel),
  { header: '分组', value: (r) => labelOf(groupTable(r.split), r.group) },
  { header: '分组代码', value: (r) => r.group },
  { header: '学校数', value: (r) => r.schools },
  { header: '参评学校数', value: (r) => r.judgedSchools },
  { header: '校校通达标学校', value: (r) => r.schoolsAttained },
  { header: '校校通达标率%', value: (r) => r.xxtPct },
  { header: '班级数', value: (r) => r.classes },
  { header: '班班通达标班级', value: (r) => r.classesAttained },
  { header: '班班通达标率%', value: (r) => r.bbtPct },
  { header: '未监测班级', value: (r) => r.classesUnmonitored },
  { header: '生机比', value: (r) => r.studentsPerComputer },
  { header: '师机比', value: (r) => r.teachersPerComputer },
];
const SCHOOL_COLUMNS: ExportColumn<SchoolResult>[] = [
  { header: '学校标识码', value: (s) => s.id },
  { header: '学校名称', value: (s) => s.name },
  { header: '区域', value: (s) => s.region },
  ...coded<SchoolResult>('城乡', 'area', (s) => s.area),
  ...coded<SchoolResult>('办学类型', 'schoolLevel', (s) => s.level),
  { header: '教学日', value: (s) => s.teachingDays },
  { header: '出口可用率%', value: (s) => s.uplink.availabilityPct },
  { header: '出口带宽Mbps', value: (s) => s.uplink.capacityMbps },
  ...coded<SchoolResult>('带宽来源', 'capacitySource', (s) => s.uplink.capacitySource ?? []),
  // 班均: per class (capacity ÷ classes); 生均 would mean per student.
  { header: '班均带宽Mbps', value: (s) => s.uplink.perClassMbps },
  { header: '拥塞', value: (s) => verdict(s.uplink.congested) },
  { header: '校校通达标', value: (s) => verdict(s.xxt.attained) },
  ...reasonColumns<SchoolResult>((s) => s.xxt.reasons),
  { header: '班级数', value: (s) => s.bbt.classes },
  { header: '班班通达标班级', value: (s) => s.bbt.attained },
  { header: '未监测班级', value: (s) => s.bbt.unmonitored },
];
const CLASSROOM_COLUMNS: ExportColumn<ClassroomResult>[] = [
  { header: '教室编号', value: (c) => c.id },
  { header: '学校标识码', value: (c) => c.school },
  { header: '教室名称', value: (c) => c.name },
  { header: '班班通达标', value: (c) => verdict(c.attained) },
  { header: '在线天数', value: (c) => c.onlineDays },
  { header: '教学日', value: (c) => c.teachingDays },
  { header: '周均使用节次', value: (c) => c.periodsUsedPerWeek },
  { header: '故障时间%', value: (c) => c.faultyPct },
  ...reasonColumns<ClassroomResult>((c) => c.reasons),
];
const DEVICE_COLUMNS: ExportColumn<DeviceAudit>[] = [
  { header: '设备编号', value: (d) => d.id },
  { header: '学校标识码', value: (d) => d.school },
  { header: '教室编号', value: (d) => d.classroom },
  ...coded<DeviceAudit>('设备类型', 'deviceKind', (d) => d.kind),
  { header: '采购批次', value: (d) => d.batch },
  { header: '采购日期', value: (d) => d.purchasedOn },
  { header: '开机小时', value: (d) => d.poweredOnHours },
  { header: '使用小时', value: (d) => d.inUseHours },
  { header: '使用天数', value: (d) => d.daysUsed },
  { header: '教学日', value: (d) => d.teachingDays },
  { header: '使用率%', value: (d) => d.usedDaysPct },
  { header: '最近使用', value: (d) => d.lastUsed },
  { header: '连续未用教学日', value: (d) => d.idleTeachingDays },
  { header: '闲置', value: (d) => verdict(d.idle) },
];

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

  async function file<T>(
    reply: FastifyReply,
    format: 'csv' | 'xlsx',
    name: string,
    ev: Evaluation,
    rows: readonly T[],
    columns: readonly ExportColumn<T>[],
  ) {
    const base = `${name}_${ev.period.from}_${ev.period.to}_${ev.profile}`;
    const body = format === 'csv' ? toCsv(rows, columns) : await toXlsx(name, rows, columns);
    return reply
      .type(CONTENT_TYPES[format])
      .header('content-disposition', `attachment; filename="${base}.${format}"`)
      .send(body);
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
        return file(reply, req.query.format, 'attainment', ev, rows, ROLLUP_COLUMNS);
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
      if (q.format !== 'json') return file(reply, q.format, 'schools', ev, rows, SCHOOL_COLUMNS);
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
        summary: '班班通 per class room with reasons.',
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
      if (q.format !== 'json') return file(reply, q.format, 'classrooms', ev, rows, CLASSROOM_COLUMNS);
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
      .describe("Idle after this many unused teaching days (default: the profile's)."),
  });
  const auditResponse = {
    200: z.object({
      ...head,
      lookbackFrom: z
        .string()
        .describe(
          'lastUsed and idleTeachingDays look back to this date (far enough for idleDays teaching days by every calendar); lastUsed null: not used since.',
        ),
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
        return file(reply, q.format, onlyIdle ? 'idle' : 'usage', ev, rows, DEVICE_COLUMNS);
      const items = rows.slice((q.page - 1) * q.pageSize, q.page * q.pageSize);
      return {
        period: ev.period,
        profile: ev.profile,
        coverage: deps.reports.coverage(ev, effectiveScope(req, q.region)),
        lookbackFrom: ev.lookbackFrom,
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
          'Usage audit per device: powered-on and in-use hours in teaching time, days used ÷ teaching days.',
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
