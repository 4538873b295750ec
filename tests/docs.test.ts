import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GENERATED_DOCS } from '../scripts/gen-docs.js';

describe('generated documentation', () => {
  for (const [path, render] of Object.entries(GENERATED_DOCS)) {
    it(`${path} is fresh (regenerate with \`npm run gen:docs\`)`, () => {
      expect(readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')).toBe(render());
    });
  }
});
