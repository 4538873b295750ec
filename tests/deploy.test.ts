import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { agentConfigSchema } from '../agents/classroom/agent.js';
import { pollerConfigSchema } from '../agents/snmp/poller.js';
import { alertsConfigSchema } from '../api/alerts/service.js';
import { apiConfigSchema } from '../api/server.js';
import { brokerConfigSchema } from '../broker/broker.js';
import { collectorConfigSchema } from '../collector/collector.js';
import { processConfigSchema } from '../common/cli.js';
import { loadConfig } from '../common/config.js';
import { influxConfigSchema } from '../common/storage/storage.js';

/** Every example in deploy/examples validates against the sections of each process that reads it. */
const dir = fileURLToPath(new URL('../deploy/examples/', import.meta.url));
const SECTIONS = {
  influx: influxConfigSchema,
  broker: brokerConfigSchema,
  collector: collectorConfigSchema,
  agent: agentConfigSchema,
  poller: pollerConfigSchema,
  api: apiConfigSchema,
  alerts: alertsConfigSchema,
} as const;

describe('deploy/examples', () => {
  // calendar-*.yaml are school calendars, not process configuration: tests/common/calendar.test.ts loads them.
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml') && !f.startsWith('calendar-'))) {
    it(`${file} is a valid configuration`, () => {
      const raw = loadConfig(processConfigSchema({}), { file: `${dir}${file}`, env: {} }) as Record<
        string,
        unknown
      >;
      const present = Object.keys(SECTIONS).filter((k) => raw[k] !== undefined) as (keyof typeof SECTIONS)[];
      expect(present.length).toBeGreaterThan(0);
      // Each section strictly, as the process that owns it would.
      const config = loadConfig(
        processConfigSchema(Object.fromEntries(present.map((k) => [k, SECTIONS[k]]))),
        {
          file: `${dir}${file}`,
          env: {},
        },
      );
      expect(config).toBeDefined();
    });
  }
});
