import { z } from 'zod';

/**
 * Alert rules. Each rule has shipped defaults; `alerts.rules.<name>` in the config overrides single fields.
 * Durations are seconds. `when: teaching` starts the pending clock only inside the school's class periods.
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
] as const;
export type RuleName = (typeof RULE_NAMES)[number];
export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

const ruleSchema = z.strictObject({
  enabled: z.boolean(),
  severity: z.enum(SEVERITIES),
  when: z.enum(['teaching', 'always']).describe('teaching: only inside class periods of school days.'),
  forS: z
    .number()
    .int()
    .min(0)
    .max(86_400)
    .describe('Grace: the condition must hold this long (in teaching time).'),
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
  /** Only a condition that begins during class starts an alert (a device off since last night is not one). */
  startsInClass: z.boolean().default(false),
  /**
   * With `when: teaching`: the grace counts class time across breaks — a break pauses it, only the condition
   * clearing resets it. Without, each break resets it (a device must stay off `forS` within one period).
   */
  pauseInBreaks: z.boolean().default(false),
  /** Rule-specific thresholds. */
  thresholdPct: z.number().min(1).max(100).optional(),
  lampHoursMax: z.number().int().min(1).optional(),
  temperatureMaxC: z.number().optional(),
  skewMaxS: z.number().positive().optional(),
  gapFactor: z.number().min(1).optional(),
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
};

const partialRule = ruleSchema.partial().optional();
export const rulesConfigSchema = z
  .strictObject(
    Object.fromEntries(RULE_NAMES.map((n) => [n, partialRule])) as unknown as Record<
      RuleName,
      typeof partialRule
    >,
  )
  .prefault({})
  .describe('Per-rule overrides of the shipped defaults.');

export function resolveRules(overrides: z.infer<typeof rulesConfigSchema>): Record<RuleName, Rule> {
  return Object.fromEntries(
    RULE_NAMES.map((n) => [n, { ...DEFAULT_RULES[n], ...(overrides[n] ?? {}) }]),
  ) as Record<RuleName, Rule>;
}

/** Titles in Chinese, for messages. */
export const RULE_TITLES: Record<RuleName, string> = {
  device_offline: '教室设备离线',
  uplink_down: '学校出口中断',
  uplink_saturated: '学校出口拥塞',
  display_fault: '显示设备故障',
  device_rebooted: '设备重启',
  snmp_unreachable: '网络设备无法访问',
  clock_skew: '设备时钟偏差',
  data_gap: '数据中断',
};
