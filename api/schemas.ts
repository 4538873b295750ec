import { z } from 'zod';
import { ERROR_RESPONSES, errorSchema, regionQuery } from '../common/http/schemas.js';
import { MISMATCH_FIELDS, UPLINK_STATES } from '../common/live.js';
import { PERIOD_USE_BASES } from '../contracts/influx.js';
import { DEVICE_KINDS } from '../contracts/messages.js';
import { AREAS, SCHOOL_LEVELS } from '../contracts/registry.js';

export { ERROR_RESPONSES, errorSchema, regionQuery };

/**
 * Request and response schemas of the API. Responses are plain `z.object`s: serialisation drops any field a
 * schema does not list, so an internal field can never leak into a response.
 */

const int = z.coerce.number().int();
export const pageQuery = {
  page: int.min(1).default(1).describe('1-based page.'),
  pageSize: int.min(1).max(5_000).default(500),
};
export const formatQuery = {
  format: z.enum(['json', 'csv', 'xlsx']).default('json').describe('json, or a CSV/XLSX download.'),
};
export const periodQuery = {
  period: z
    .string()
    .min(4)
    .max(80)
    .describe('YYYY-MM-DD, YYYY-Www, YYYY-MM, term:NAME or YYYY-MM-DD..YYYY-MM-DD (local dates, UTC+8).'),
  profile: z.string().max(64).optional().describe('Standard profile id (GET /v1/profiles); default cn-2020.'),
};

export const periodSchema = z.object({ from: z.string(), to: z.string() });
export const reasonSchema = z.object({ code: z.string(), message: z.string() });

/** What every school row carries, in reports and in the fleet list. */
const schoolBase = {
  id: z.string(),
  name: z.string(),
  region: z.string(),
  area: z.enum(AREAS),
  level: z.enum(SCHOOL_LEVELS),
  classes: z.number(),
  students: z.number(),
  teachers: z.number(),
};

export const schoolResultSchema = z.object({
  ...schoolBase,
  teachingDays: z.number(),
  uplink: z.object({
    monitored: z.boolean(),
    availabilityPct: z.number().nullable(),
    capacityMbps: z.number().nullable(),
    capacitySource: z.enum(['contract', 'polled']).nullable(),
    perClassMbps: z.number().nullable(),
    busyPct: z.number().nullable(),
    congested: z.boolean(),
    p95MaxDayPct: z.number().nullable(),
    probedPct: z.number().nullable(),
    reachablePct: z.number().nullable(),
    qualityLowPct: z.number().nullable(),
    lossPct: z.number().nullable(),
    linkQualityLow: z.boolean().nullable(),
  }),
  xxt: z.object({ attained: z.boolean().nullable(), reasons: z.array(reasonSchema) }),
  bbt: z.object({ classes: z.number(), attained: z.number(), unmonitored: z.number() }),
  computers: z.object({ teacherWorking: z.number(), studentWorking: z.number() }),
});

export const classroomResultSchema = z.object({
  id: z.string(),
  school: z.string(),
  name: z.string(),
  attained: z.boolean().nullable(),
  reasons: z.array(reasonSchema),
  equipped: z.boolean(),
  onlineDays: z.number(),
  teachingDays: z.number(),
  periodsUsedPerWeek: z.number(),
  faultyPct: z.number().nullable(),
  onHours: z
    .number()
    .nullable()
    .describe('Hours on in teaching time, of its best display (api/README.md, Definitions).'),
  inUseHours: z.number().nullable().describe('Hours in use in teaching time, of its best display.'),
  onUnusedHours: z
    .number()
    .nullable()
    .describe('Hours on in teaching time but not in use, of its best display.'),
  periodsUsed: z.number().nullable().describe('Class periods used, of its best display.'),
  usedHoursPerWeek: z
    .number()
    .nullable()
    .describe('In-use hours per teaching week; null: no teaching week measured.'),
  useBasis: z
    .enum(PERIOD_USE_BASES)
    .nullable()
    .describe(
      'What its use rests on: activity (input, teaching applications), power (the display being on), mixed.',
    ),
  leftOnHours: z
    .number()
    .nullable()
    .describe('Hours left on outside teaching time, summed over its displays.'),
});

export const deviceAuditSchema = z.object({
  id: z.string(),
  school: z.string(),
  classroom: z.string().nullable(),
  kind: z.string(),
  batch: z.string().nullable(),
  purchasedOn: z.string().nullable(),
  poweredOnHours: z.number().describe('Hours on in teaching time.'),
  inUseHours: z.number().describe('Hours in use in teaching time (docs/usage.md).'),
  onUnusedHours: z.number().describe('Hours on in teaching time but not in use.'),
  leftOnHours: z
    .number()
    .describe(
      'Hours on outside teaching time: before the first and after the last period, and on days without school.',
    ),
  periodsUsed: z.number().describe('Class periods used (in use for at least half of the period).'),
  usedHoursPerWeek: z
    .number()
    .nullable()
    .describe('In-use hours per teaching week; null: no teaching week measured.'),
  useBasis: z
    .enum(PERIOD_USE_BASES)
    .nullable()
    .describe(
      'What its use rests on: activity, power (an older agent, or no activity source), mixed; null: never online in teaching time.',
    ),
  daysUsed: z.number(),
  teachingDays: z.number(),
  usedDaysPct: z.number().nullable(),
  lastUsed: z.string().nullable(),
  idleTeachingDays: z.number(),
  idle: z.boolean(),
});

export const rollupRowSchema = z.object({
  region: z.string(),
  regionName: z.string(),
  regionLevel: z.string(),
  split: z.enum(['all', 'area', 'level']),
  group: z.string(),
  schools: z.number(),
  schoolsNotApplicable: z.number(),
  schoolsAttained: z.number(),
  xxtPct: z.number().nullable(),
  classes: z.number(),
  classesAttained: z.number(),
  bbtPct: z.number().nullable(),
  classesUnmonitored: z.number(),
  students: z.number(),
  teachers: z.number(),
  studentComputers: z.number(),
  teacherComputers: z.number(),
  studentsPerComputer: z.number().nullable(),
  teachersPerComputer: z.number().nullable(),
});

export const coverageSchema = z
  .object({ rolledDays: z.number(), teachingDates: z.number() })
  .describe('Teaching dates in the period that have been rolled up, of all teaching dates.');

export const uplinkLiveSchema = z.object({
  school: z.string(),
  device: z.string(),
  ifname: z.string(),
  inBps: z.number().nullable(),
  outBps: z.number().nullable(),
  speedMbps: z.number().nullable(),
  operStatus: z
    .string()
    .describe('What the last reading said (IF-MIB ifOperStatus), however old: see `state`.'),
  tsMs: z.number().describe('When the reading was taken.'),
  state: z
    .enum(UPLINK_STATES)
    .describe(
      'What holds now: `up`; `down` — the interface is not up, or the router stopped answering SNMP (the poller said so); `stale` — no reading for `api.live.staleAfterS` (or 3 poll intervals), so the rates and `operStatus` are old news.',
    ),
  stateSinceMs: z.number().describe('Since when `state` holds, as the API saw it.'),
  capacityMbps: z
    .number()
    .nullable()
    .describe("What the utilisation is a share of: the school's contracted Mbps, else the interface speed."),
  capacitySource: z.enum(['contract', 'polled']).nullable(),
  utilisationPct: z
    .number()
    .nullable()
    .describe(
      'The busier direction (in or out) as % of `capacityMbps`, 2 decimals; of the last reading when `state` is not `up`. null: no rate or no capacity.',
    ),
});

/** Where an event's school (and device) lies, by name: what the people reading a live stream know. */
const placeFields = {
  schoolName: z.string(),
  region: z.string().describe("The school's region path, e.g. 330000/330100/330106."),
  regionNames: z.array(z.string()).describe('The names along the path, e.g. 浙江省, 杭州市, 西湖区.'),
  classroom: z.string().nullable().describe("The device's classroom id; null for a device in no classroom."),
  classroomName: z.string().nullable(),
};

/** An `uplink` event of `/v1/bandwidth/live`: the reading with its place. */
export const uplinkEventSchema = uplinkLiveSchema.extend(placeFields);

/** A `device` event of `/v1/bandwidth/live?devices=true`: a registered device went online or offline. */
export const deviceEventSchema = z.object({
  school: z.string(),
  device: z.string(),
  kind: z.enum(DEVICE_KINDS).describe("The registry's kind."),
  state: z.enum(['online', 'offline']),
  sinceMs: z.number().nullable().describe('As `sinceMs` of `/v1/devices`.'),
  ...placeFields,
});

export const liveStateSchema = z.enum(['online', 'offline', 'unknown']);

/** Fields where what a registered device announced can disagree with the registry (common/live.ts). */

export const announcedSchema = z
  .object({ region: z.string().nullable(), classroom: z.string().nullable(), kind: z.string() })
  .describe(
    "What the device's last status announced (null: it said nothing); the registry decides, not this.",
  );

export const deviceOutSchema = z.object({
  id: z.string(),
  school: z.string(),
  classroom: z.string().nullable(),
  kind: z.enum(DEVICE_KINDS),
  serial: z.string().nullable(),
  batch: z.string().nullable(),
  state: liveStateSchema,
  sinceMs: z
    .number()
    .nullable()
    .describe(
      'Since when it is in `state` (ms): online, when it connected; offline, when it went offline (the arrival of its last will, or the time its clean shutdown or poller says). null: no status yet, or offline since before the API started (a last will replayed on subscribing does not say when the connection ended).',
    ),
  announced: announcedSchema.nullable().describe('null: no status from this (school, device) yet.'),
  registryMismatch: z
    .array(z.enum(MISMATCH_FIELDS))
    .describe('Fields where the announcement disagrees with the registry (region path, classroom, kind).'),
});

/** The last probe cycle of a school's uplink device (docs/links.md). */
export const linkLiveSchema = z.object({
  school: z.string(),
  device: z.string(),
  method: z.enum(['icmp', 'tcp']),
  sent: z.number(),
  received: z.number(),
  lossPct: z.number().describe('100 × (sent − received) ÷ sent, unrounded.'),
  rttMs: z.number().nullable().describe('Average round trip of the answers; null when none answered.'),
  jitterMs: z.number().nullable(),
  tsMs: z.number().describe('When the cycle ran (the poller’s clock).'),
  ageS: z
    .number()
    .describe(
      "Seconds since the cycle ran, by the API's clock when it answered (counted from the cycle's arrival if the poller's clock is ahead).",
    ),
  staleAfterS: z
    .number()
    .describe(
      "The age beyond which the cycle is stale: 3 of the intervals between the device's cycles as the API saw them (the poller's `probes.intervalS`), at most `api.live.staleAfterS` (also until a second cycle came).",
    ),
  stale: z
    .boolean()
    .describe(
      'Older than `staleAfterS`: the poller, or the probes of this school, stopped; its loss, RTT and jitter are not now.',
    ),
});

export const schoolOutSchema = z.object({
  ...schoolBase,
  contractedMbps: z.number().nullable(),
  devices: z.object({ total: z.number(), online: z.number(), offline: z.number(), unknown: z.number() }),
  uplink: uplinkLiveSchema.nullable(),
  link: linkLiveSchema
    .nullable()
    .describe(
      "The last probe cycle of the school's uplink device: loss, round trip and jitter now; null when not probed.",
    ),
});
