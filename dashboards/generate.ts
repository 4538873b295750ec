import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderAll } from './src/index.js';

/**
 * `npm run gen:dashboards`: writes dashboards/generated/<uid>.json from dashboards/src and removes JSON files
 * that no dashboard produces any more. tests/dashboards checks the committed files are fresh.
 */
export const GENERATED_DIR = fileURLToPath(new URL('./generated/', import.meta.url));

const files = renderAll();
mkdirSync(GENERATED_DIR, { recursive: true });
for (const name of readdirSync(GENERATED_DIR)) {
  if (name.endsWith('.json') && !files.has(name)) rmSync(join(GENERATED_DIR, name));
}
for (const [name, text] of files) writeFileSync(join(GENERATED_DIR, name), text);
console.log(`wrote ${[...files.keys()].map((n) => `dashboards/generated/${n}`).join(', ')}`);
