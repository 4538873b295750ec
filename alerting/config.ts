import { z } from 'zod';
import { WEEKDAYS } from '../common/calendar.js';
import { idSchema, regionPathSchema } from '../contracts/ids.js';
import { channelSchema } from './channels/index.js';
import { RULE_NAMES, rulesConfigSchema } from './rules.js';

/** HH:MM-HH:MM (local time) on some weekdays: a recurring maintenance window; `from` > `to` spans midnight. */
export const maintenanceSchema = z.strictObject({
  name: z.string().min(1).max(64),
  regions: z.array(regionPathSchema).optional(),
  schools: z.array(idSchema).optional(),
  rules: z.array(z.enum(RULE_NAMES)).optional(),
  weekdays: z.array(z.enum(WEEKDAYS)).min(1),
  from: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, { message: 'must be HH:MM' }),
  to: z.string().regex(/^([01]\d|2[0-4]):[0-5]\d$/, { message: 'must be HH:MM' }),
});

export const alertsConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    stateFile: z
      .string()
      .default('var/alerts-state.json')
      .describe(
        'Active alerts, silences, history (survives restarts). Each write keeps the previous file as `<stateFile>.bak`; a malformed state file at start is replaced by that last good copy with an error logged, and when both are malformed the API refuses to start, naming both files and the first bad field of each.',
      ),
    groupWaitS: z
      .number()
      .int()
      .min(0)
      .max(600)
      .default(30)
      .describe('Hold a school’s notifications this long, then send one message.'),
    tickMs: z
      .number()
      .int()
      .min(50)
      .max(10_000)
      .default(1_000)
      .describe(
        'Longest sleep between evaluations (calendar and silence boundaries, data gaps); timers wake it on time.',
      ),
    flap: z
      .strictObject({
        changes: z.number().int().min(2).default(6),
        windowS: z.number().int().min(60).default(600),
      })
      .prefault({})
      .describe(
        'A key changing this often within the window is flapping: it resolves only after a quiet window.',
      ),
    rules: rulesConfigSchema,
    channels: z
      .array(channelSchema)
      .default([])
      .describe('Where notifications go (secrets: use CFM_ALERTS__… overrides).'),
    linkBaseUrl: z.string().url().optional().describe('Public URL of the API, for the link in each message.'),
    maintenance: z.array(maintenanceSchema).default([]).describe('Weekly windows without notifications.'),
    historyMax: z.number().int().min(10).max(100_000).default(5_000),
    delivery: z
      .strictObject({
        maxAttempts: z.number().int().min(1).max(20).default(8),
        minDelayMs: z.number().int().min(10).default(1_000),
        maxDelayMs: z.number().int().min(100).default(300_000),
      })
      .prefault({}),
  })
  .prefault({})
  .describe('Alerting: rules, channels, maintenance windows (design: alerting/README.md).');
export type AlertsConfig = z.infer<typeof alertsConfigSchema>;
export type Maintenance = z.infer<typeof maintenanceSchema>;
