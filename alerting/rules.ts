import { z } from 'zod';
import { LABELS } from '../contracts/labels.js';

/**
 * Alert rules. Each rule has shipped defaults (DEFAULT_RULES, shown in docs/config.md); `alerts.rules.<name>` in
 * the config overrides single fields. Durations are seconds. `when: teaching` starts the pending clock only inside
 * the school's class periods.
 */
export const RULE_NAMES = [
  'device_offline',
  'uplink_down',
  'uplink_saturated',
  'display_fault',
  'device_rebooted',
  'snmp_unreachable',
  'clock_skew',
  'data_gap',
  'link_quality_low',
  'management_down',
] as const;
export type RuleName = (typeof RULE_NAMES)[number];
export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** The fields every rule has. */
const COMMON_FIELDS = {
  enabled: z.boolean().describe('Raise this alert at all.'),
  severity: z
    .enum(SEVERITIES)
    .describe("How urgent its notifications are (a channel's `minSeverity` filters on it)."),
  when: z
    .enum(['teaching', 'always'])
    .describe('teaching: only inside class periods of school days (the calendar); always: at any hour.'),
  forS: z
    .number()
    .int()
    .min(0)
    .max(86_400)
    .describe(
      'Grace: the condition must hold this long (in class time for `when: teaching`) before it fires.',
    ),
  resolveAfterS: z
    .number()
    .int()
    .min(0)
    .max(86_400)
    .describe('Hysteresis: clear for this long before resolving.'),
  renotifyS: z
    .number()
    .int()
    .min(0)
    .max(7 * 86_400)
    .describe('Repeat while firing and unacknowledged; 0 = never.'),
  startsInClass: z
    .boolean()
    .describe(
      'Only a condition that begins during class opens an alert (a device off since last night is not one).',
    ),
  pauseInBreaks: z
    .boolean()
    .describe(
      'With `when: teaching`: the grace counts class time across breaks — a break pauses it, only the condition clearing resets it. false: each break resets it (a device must stay off `forS` within one period).',
    ),
};

/** Thresholds, each of the rules that use it (a rule's defaults say which). */
const THRESHOLD_FIELDS = {
  thresholdPct: z
    .number()
    .min(1)
    .max(100)
    .describe(
      "Utilisation (% of the school's capacity — its contracted Mbps, else the interface speed — in either direction) at or above which it is saturated.",
    ),
  lampHoursMax: z
    .number()
    .int()
    .min(1)
    .describe('Lamp hours (PJLink `LAMP`) above which the display is at fault.'),
  temperatureMaxC: z.number().describe('Display temperature (°C) above which it is at fault.'),
  skewMaxS: z
    .number()
    .positive()
    .describe("Clock offset (s) from the server's above which a device is skewed."),
  gapFactor: z
    .number()
    .min(1)
    .describe('Promised heartbeats without telemetry after which a connected device has a data gap.'),
  maxLossPct: z.number().min(0).max(100).describe('Probe loss (%) above which a cycle is of low quality.'),
  maxRttMs: z
    .number()
    .positive()
    .describe('Probe round-trip time (ms, the average) above which a cycle is of low quality.'),
  maxJitterMs: z.number().positive().describe('Probe jitter (ms) above which a cycle is of low quality.'),
};

const ruleSchema = z.strictObject({
  ...COMMON_FIELDS,
  thresholdPct: THRESHOLD_FIELDS.thresholdPct.optional(),
  lampHoursMax: THRESHOLD_FIELDS.lampHoursMax.optional(),
  temperatureMaxC: THRESHOLD_FIELDS.temperatureMaxC.optional(),
  skewMaxS: THRESHOLD_FIELDS.skewMaxS.optional(),
  gapFactor: THRESHOLD_FIELDS.gapFactor.optional(),
  maxLossPct: THRESHOLD_FIELDS.maxLossPct.optional(),
  maxRttMs: THRESHOLD_FIELDS.maxRttMs.optional(),
  maxJitterMs: THRESHOLD_FIELDS.maxJitterMs.optional(),
});
export type Rule = z.infer<typeof ruleSchema>;

/**
 * Defaults, and why: `device_offline.forS` (120 s) exceeds the poller's detection of a dead uplink (one 60 s poll
 * plus its timeout), so an uplink outage is known — and inhibits the classrooms — before a classroom would page.
 * `uplink_saturated` counts its 10 minutes in class time across breaks (`pauseInBreaks`): a school saturated
 * through the end of one period and the start of the next pages 10 minutes of class into it, once — reset at
 * each break, it paged only when one period alone held 10 saturated minutes (33 minutes late in #15, or never
 * with short periods); not gated by class at all, it would page at night for backups nobody teaches through.
 */
export const DEFAULT_RULES: Record<RuleName, Rule> = {
  device_offline: {
    enabled: true,
    severity: 'warning',
    when: 'teaching',
    startsInClass: true,
    pauseInBreaks: false,
    forS: 120,
    resolveAfterS: 300,
    renotifyS: 4 * 3600,
  },
  uplink_down: {
    enabled: true,
    severity: 'critical',
    when: 'teaching',
    startsInClass: false,
    pauseInBreaks: false,
    forS: 60,
    resolveAfterS: 180,
    renotifyS: 3600,
  },
  uplink_saturated: {
    enabled: true,
    severity: 'warning',
    when: 'teaching',
    startsInClass: false,
    pauseInBreaks: true,
    forS: 600,
    resolveAfterS: 600,
    renotifyS: 4 * 3600,
    thresholdPct: 90,
  },
  display_fault: {
    enabled: true,
    severity: 'warning',
    when: 'teaching',
    startsInClass: false,
    pauseInBreaks: false,
    forS: 60,
    resolveAfterS: 300,
    renotifyS: 24 * 3600,
    lampHoursMax: 4_000,
    temperatureMaxC: 70,
  },
  device_rebooted: {
    enabled: true,
    severity: 'info',
    when: 'always',
    startsInClass: false,
    pauseInBreaks: false,
    forS: 0,
    resolveAfterS: 0,
    renotifyS: 0,
  },
  snmp_unreachable: {
    enabled: true,
    severity: 'warning',
    when: 'teaching',
    startsInClass: false,
    pauseInBreaks: false,
    forS: 180,
    resolveAfterS: 300,
    renotifyS: 4 * 3600,
  },
  clock_skew: {
    enabled: true,
    severity: 'info',
    when: 'always',
    startsInClass: false,
    pauseInBreaks: false,
    forS: 300,
    resolveAfterS: 600,
    renotifyS: 24 * 3600,
    skewMaxS: 120,
  },
  data_gap: {
    enabled: true,
    severity: 'warning',
    when: 'teaching',
    startsInClass: true,
    pauseInBreaks: false,
    forS: 0,
    resolveAfterS: 300,
    renotifyS: 4 * 3600,
    gapFactor: 5,
  },
  // The 校校通 defaults for interactive video (docs/links.md: ITU-T G.1010, Y.1541), held for 5 minutes of class.
  link_quality_low: {
    enabled: true,
    severity: 'warning',
    when: 'teaching',
    startsInClass: false,
    pauseInBreaks: true,
    forS: 300,
    resolveAfterS: 600,
    renotifyS: 4 * 3600,
    maxLossPct: 1,
    maxRttMs: 200,
    maxJitterMs: 50,
  },
  management_down: {
    enabled: true,
    severity: 'warning',
    when: 'teaching',
    startsInClass: false,
    pauseInBreaks: false,
    forS: 180,
    resolveAfterS: 300,
    renotifyS: 24 * 3600,
  },
};

/** What each rule watches (the configuration reference's row of `alerts.rules.<name>`). */
const RULE_DESCRIPTIONS: Record<RuleName, string> = {
  device_offline:
    'A classroom device lost its connection during class (its last will); a clean shutdown, or a device off since before class, is not one.',
  uplink_down:
    "The school's uplink is down: its interface not up, or its uplink router not answering SNMP while its probes (if it is probed) do not answer either. Inhibits the school's device_offline, snmp_unreachable and data_gap alerts.",
  uplink_saturated:
    "The school's uplink at or above `thresholdPct` of its capacity (the contracted Mbps, else the interface speed), in either direction, for `forS` of class time counted across breaks (alerting/README.md, Rules).",
  display_fault:
    'A display reports a PJLink error, its touch controller does not answer, or it is over `temperatureMaxC` or `lampHoursMax`.',
  device_rebooted: 'A device restarted (a router: its sysUpTime went back): one notification, at any hour.',
  snmp_unreachable: "A router or switch other than the school's uplink device does not answer SNMP.",
  clock_skew: "A device's clock is more than `skewMaxS` off the server's.",
  data_gap: 'A connected device sent no telemetry for `gapFactor` of its promised heartbeats.',
  link_quality_low:
    "The probes of the school's uplink device lose more than `maxLossPct`, or answer slower than `maxRttMs` or with more jitter than `maxJitterMs` (docs/links.md), for `forS` of class time across breaks.",
  management_down:
    "The school's uplink router does not answer SNMP while its probes do: the link is up, its management is not (not `uplink_down`).",
};

/**
 * One rule's section of `alerts.rules`: every field the rule has, with its shipped default (DEFAULT_RULES), so
 * that a field left out keeps it and the configuration reference shows it; a threshold the rule does not use is
 * an unknown key (an error, as everywhere in the configuration), not a setting without effect.
 */
function ruleConfigSchema(name: RuleName) {
  const defaults = DEFAULT_RULES[name];
  const shape: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries({ ...COMMON_FIELDS, ...THRESHOLD_FIELDS })) {
    const value = defaults[key as keyof Rule];
    if (value !== undefined) shape[key] = (field as z.ZodType<typeof value>).default(value);
  }
  return z.strictObject(shape).prefault({}).describe(RULE_DESCRIPTIONS[name]);
}

/** `alerts.rules` as a YAML file writes it: per rule, the fields that differ from the shipped defaults. */
export type RulesConfig = { [N in RuleName]?: Partial<Rule> };

// Built from the defaults, so typed here: every rule whole out, the fields that differ in.
export const rulesConfigSchema = z
  .strictObject(
    Object.fromEntries(RULE_NAMES.map((n) => [n, ruleConfigSchema(n)])) as unknown as {
      [N in RuleName]: z.ZodPrefault<z.ZodType<Rule, Partial<Rule>>>;
    },
  )
  .prefault({})
  .describe(
    'The alert rules, each with its shipped defaults: set only the fields that differ (alerting/README.md, Rules).',
  );

/** Every rule, from the fields of `overrides` and the shipped defaults. */
export function resolveRules(overrides: RulesConfig): Record<RuleName, Rule> {
  return rulesConfigSchema.parse(overrides);
}

/** Titles in Chinese, for messages. */
/** Each rule's title in messages and the console: the one table of labels (contracts/labels.ts). */
export const RULE_TITLES: Record<RuleName, string> = LABELS.alertRule;
