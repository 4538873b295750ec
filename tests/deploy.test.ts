import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { processConfigSchema } from '../common/cli.js';
import { loadConfig } from '../common/config.js';
import { ALL_SECTIONS } from '../scripts/gen-docs.js';

/** Every example in deploy/examples validates against the sections of each process that reads it. */
const dir = fileURLToPath(new URL('../deploy/examples/', import.meta.url));
const SECTIONS = ALL_SECTIONS;

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
