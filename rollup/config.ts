import { z } from 'zod';

/** The fields of the `rollup` section (also accepted, deprecated, as `api.rollup`). */
export const rollupFields = {
  enabled: z
    .boolean()
    .default(true)
    .describe(
      'Run the daily rollups in this process (exactly one process of a deployment should: the all-in-one API, or the worker of a scaled one).',
    ),
  bucketS: z
    .number()
    .int()
    .min(60)
    .max(3_600)
    .default(300)
    .describe("Rollup bucket; at least the agents' and pollers' reporting interval."),
  lateDays: z.number().int().min(0).max(60).default(3).describe('Finished days rolled up again each run.'),
  everyMs: z
    .number()
    .int()
    .min(60_000)
    .default(3_600_000)
    .describe('How often the rollup runs (today included).'),
  settleMs: z
    .number()
    .int()
    .min(0)
    .default(7_200_000)
    .describe(
      "A window of a day (a class period, the time around them) is read from raw points once it ended this long ago, and its results reused by later runs until a collector's `late_data` marker names its date (docs/scale.md). At least the collectors' `lateAfterS` plus their `influx.maxRetryTimeMs` (default 600 s + 1 h).",
    ),
  readsInFlight: z
    .number()
    .int()
    .min(1)
    .max(8)
    .default(2)
    .describe(
      "Queries a rollup keeps in flight to InfluxDB while it reads a day (each one group of schools, at most 400,000 bucket rows): more uses more of InfluxDB's cores, and holds more responses in this process's memory.",
    ),
  attainmentWindowDays: z
    .number()
    .int()
    .min(0)
    .max(366)
    .default(30)
    .describe(
      'Each rolled-up day also gets `attainment_day` points (for dashboards): the attainment of this many days ending that day, per profile; 0 = none.',
    ),
};

export const rollupConfigSchema = z
  .strictObject(rollupFields)
  .prefault({})
  .describe(
    'The daily rollups (rollup/README.md): usage, uplink and attainment per day, from the raw readings, for the reports and dashboards.',
  );
export type RollupConfig = z.infer<typeof rollupConfigSchema>;
