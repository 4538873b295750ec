import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alertsConfigSchema } from '../../alerting/config.js';
import { DEFAULT_RULES, RULE_NAMES, resolveRules } from '../../alerting/rules.js';

/** The rules' configuration: each rule's section with its shipped defaults, in the schema and in docs/config.md. */
describe('alert rule configuration', () => {
  it('an override changes only its fields: the rest of the rule keeps its defaults', () => {
    const { rules } = alertsConfigSchema.parse({ rules: { device_offline: { forS: 300 } } });
    // startsInClass stays true: a device off since last night must not page when class starts.
    expect(rules.device_offline).toEqual({ ...DEFAULT_RULES.device_offline, forS: 300 });
    expect(rules.uplink_saturated).toEqual(DEFAULT_RULES.uplink_saturated);
    expect(alertsConfigSchema.parse({}).rules).toEqual(DEFAULT_RULES);
    expect(resolveRules({ data_gap: { gapFactor: 3 } }).data_gap).toEqual({
      ...DEFAULT_RULES.data_gap,
      gapFactor: 3,
    });
  });

  it('a threshold a rule does not use is an unknown key, not a setting without effect', () => {
    const r = alertsConfigSchema.safeParse({ rules: { device_offline: { thresholdPct: 50 } } });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]).toMatchObject({
      code: 'unrecognized_keys',
      keys: ['thresholdPct'],
      path: ['rules', 'device_offline'],
    });
  });

  it('docs/config.md shows every default of every rule', () => {
    const doc = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
    for (const name of RULE_NAMES)
      for (const [field, value] of Object.entries(DEFAULT_RULES[name])) {
        const row = doc.split('\n').find((l) => l.startsWith(`| \`alerts.rules.${name}.${field}\` |`));
        expect(row, `${name}.${field}`).toContain(`| \`${JSON.stringify(value)}\` |`);
      }
  });
});
