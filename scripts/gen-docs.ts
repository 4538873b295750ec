// Regenerates the committed documentation that is derived from code. Run: npm run gen:docs
// A test (tests/docs.test.ts) fails when a committed copy is stale.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { agentConfigSchema } from '../agents/classroom/agent.js';
import { pollerConfigSchema } from '../agents/snmp/poller.js';
import { alertsConfigSchema } from '../alerting/config.js';
import { API_SECTIONS } from '../api/compose.js';
import { brokerConfigSchema } from '../broker/broker.js';
import { collectorConfigSchema } from '../collector/collector.js';
import { renderConfigReference } from '../common/config-doc.js';
import { logConfigSchema } from '../common/log.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { renderTopicMap } from '../contracts/index.js';
import { rollupConfigSchema } from '../rollup/config.js';

/**
 * Every configuration section, in the order an operator meets them; each name must be one of SECTION_NAMES
 * (common/cli.ts), which a test checks. A new section adds one line here.
 */
export const ALL_SECTIONS = {
  influx: influxConfigSchema,
  log: logConfigSchema,
  broker: brokerConfigSchema,
  collector: collectorConfigSchema,
  agent: agentConfigSchema,
  poller: pollerConfigSchema,
  api: API_SECTIONS.api,
  alerts: alertsConfigSchema,
  rollup: rollupConfigSchema,
};

export const GENERATED_DOCS: Record<string, () => string> = {
  'docs/topics.md': renderTopicMap,
  'docs/config.md': () => renderConfigReference(ALL_SECTIONS),
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [path, render] of Object.entries(GENERATED_DOCS)) {
    writeFileSync(fileURLToPath(new URL(`../${path}`, import.meta.url)), render());
    console.log(`wrote ${path}`);
  }
}
