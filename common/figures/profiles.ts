import { z } from 'zod';
import { idSchema } from '../../contracts/ids.js';
import { DEFAULT_LINK_QUALITY, LINK_QUALITY_SOURCE, linkQualitySchema } from './quality.js';

/**
 * Standard profiles: versioned, named sets of the thresholds that decide 校校通 and 班班通 attainment. Standards
 * differ by province and year, so a request names the profile it is judged by (`?profile=cn-2020`), and a
 * deployment adds its own in `api.profiles`. Each built-in value carries its source; where no policy document
 * gives a figure, the value is this project's default and says so.
 */
export const CONGESTION_THRESHOLDS = [50, 60, 70, 80, 90] as const;

/**
 * Idle after this many rolled-up teaching days without use (four teaching weeks): the usage audit's threshold
 * in every built-in profile and in a deployment's profile that sets none — so the default of
 * `/v1/audit/idle` without `?idleDays=`, for the default profile. What quotes "idle" elsewhere (the quickstart's
 * summary, a dashboard) imports this rather than a number of its own.
 */
export const DEFAULT_IDLE_DAYS = 20;

export const profileSchema = z.strictObject({
  id: idSchema,
  version: z.string().min(1).max(32).describe('Version of the standard, e.g. the year of the plan.'),
  name: z.string().min(1).max(128),
  perClassMbps: z
    .strictObject({ urban: z.number().positive(), rural: z.number().positive() })
    .describe('Minimum uplink bandwidth per class (uplink capacity ÷ classes), urban / rural schools.'),
  minUplinkMbps: z.number().positive().describe('Minimum school uplink capacity.'),
  minUplinkAvailabilityPct: z
    .number()
    .min(0)
    .max(100)
    .describe('Minimum share of teaching time the uplink is up (buckets with data and ifOperStatus up).'),
  congestionPct: z
    .literal(CONGESTION_THRESHOLDS)
    .describe('The uplink is congested when its 95th-percentile utilisation in teaching time reaches this.'),
  linkQuality: linkQualitySchema
    .optional()
    .describe(
      "校校通 link quality from the school's probes (docs/links.md): without it, quality is not judged. The built-in profiles set the defaults for interactive video.",
    ),
  minUsePeriodsPerWeek: z
    .number()
    .min(0)
    .describe('班班通 use: class periods per teaching week with the display in use.'),
  minOnlineDaysPct: z
    .number()
    .min(0)
    .max(100)
    .describe('班班通: share of teaching days the classroom was online.'),
  maxFaultyPct: z
    .number()
    .min(0)
    .max(100)
    .describe('班班通 healthy: at most this share of its online teaching time with a reported fault.'),
  idleDays: z
    .number()
    .int()
    .min(1)
    .default(DEFAULT_IDLE_DAYS)
    .describe(
      `Usage audit: a device unused on this many rolled-up teaching days is idle (the default of /v1/audit/idle without ?idleDays=). Default ${DEFAULT_IDLE_DAYS}, four teaching weeks, as in the built-in profiles.`,
    ),
  sources: z.record(z.string(), z.string()).default({}).describe('Where each value comes from.'),
});
export type Profile = z.infer<typeof profileSchema>;

const PROJECT_DEFAULT = 'project default (no policy figure); set your own in api.profiles';
const COMMON_SOURCES = {
  minUplinkAvailabilityPct: PROJECT_DEFAULT,
  congestionPct: `${PROJECT_DEFAULT}; 80 % at the 95th percentile is common operator practice for capacity planning`,
  linkQuality: LINK_QUALITY_SOURCE,
  minUsePeriodsPerWeek: 'a local 班班通 rule: a classroom uses its equipment at ≥ 10 class periods a week',
  minOnlineDaysPct: PROJECT_DEFAULT,
  maxFaultyPct: PROJECT_DEFAULT,
  idleDays: `${PROJECT_DEFAULT}: unused for four teaching weeks`,
};

export const BUILTIN_PROFILES: readonly Profile[] = [
  {
    id: 'cn-2017',
    version: '2017',
    name: '2017 city plan: 4 Mbps per urban class, 2 Mbps per rural class',
    perClassMbps: { urban: 4, rural: 2 },
    minUplinkMbps: 10,
    minUplinkAvailabilityPct: 99,
    congestionPct: 80,
    linkQuality: DEFAULT_LINK_QUALITY,
    minUsePeriodsPerWeek: 10,
    minOnlineDaysPct: 80,
    maxFaultyPct: 10,
    idleDays: DEFAULT_IDLE_DAYS,
    sources: {
      perClassMbps: "a city's education-informatisation plan, 2017 targets (docs/domain.md)",
      minUplinkMbps: 'national 2017 target: ≥ 70 % of schools with ≥ 10 Mbps access',
      ...COMMON_SOURCES,
    },
  },
  {
    id: 'cn-2020',
    version: '2020',
    name: '2020 city plan: 10 Mbps per urban class, 4 Mbps per rural class',
    perClassMbps: { urban: 10, rural: 4 },
    minUplinkMbps: 100,
    minUplinkAvailabilityPct: 99,
    congestionPct: 80,
    linkQuality: DEFAULT_LINK_QUALITY,
    minUsePeriodsPerWeek: 10,
    minOnlineDaysPct: 80,
    maxFaultyPct: 10,
    idleDays: DEFAULT_IDLE_DAYS,
    sources: {
      perClassMbps: "a city's education-informatisation plan, 2020 targets (docs/domain.md)",
      minUplinkMbps: `${PROJECT_DEFAULT}: 10 classes at the 2020 urban per-class figure`,
      ...COMMON_SOURCES,
    },
  },
  {
    id: 'gigabit',
    version: '2021',
    name: '千兆进校、百兆进班: 1,000 Mbps to the school, 100 Mbps to the class',
    perClassMbps: { urban: 100, rural: 100 },
    minUplinkMbps: 1_000,
    minUplinkAvailabilityPct: 99.5,
    congestionPct: 80,
    linkQuality: DEFAULT_LINK_QUALITY,
    minUsePeriodsPerWeek: 10,
    minOnlineDaysPct: 90,
    maxFaultyPct: 5,
    idleDays: DEFAULT_IDLE_DAYS,
    sources: {
      perClassMbps: 'the national drive 千兆进校、百兆进班 (docs/domain.md)',
      minUplinkMbps: 'the national drive 千兆进校、百兆进班',
      ...COMMON_SOURCES,
    },
  },
];

export const DEFAULT_PROFILE = 'cn-2020';

/** Built-ins plus a deployment's own (which may replace a built-in by id). */
export function profileSet(extra: readonly Profile[] = []): Map<string, Profile> {
  const m = new Map<string, Profile>(BUILTIN_PROFILES.map((p) => [p.id, p]));
  for (const p of extra) m.set(p.id, p);
  return m;
}
