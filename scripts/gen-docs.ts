// Regenerates the committed documentation that is derived from code. Run: npm run gen:docs
// A test (tests/docs.test.ts) fails when a committed copy is stale.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderConfigReference } from '../common/config-doc.js';
import { CONFIG_SECTIONS } from '../common/config-sections.js';
import { renderTopicMap } from '../contracts/index.js';

export const GENERATED_DOCS: Record<string, () => string> = {
  'docs/topics.md': renderTopicMap,
  'docs/config.md': () => renderConfigReference(CONFIG_SECTIONS),
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [path, render] of Object.entries(GENERATED_DOCS)) {
    writeFileSync(fileURLToPath(new URL(`../${path}`, import.meta.url)), render());
    console.log(`wrote ${path}`);
  }
}
