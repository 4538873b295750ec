// Regenerates the committed documentation that is derived from code. Run: npm run gen:docs
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderTopicMap } from '../contracts/index.js';

const target = fileURLToPath(new URL('../docs/topics.md', import.meta.url));
writeFileSync(target, renderTopicMap());
console.log(`wrote ${target}`);
