import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SECTION_NAMES } from '../common/cli.js';
import { ALL_SECTIONS, GENERATED_DOCS } from '../scripts/gen-docs.js';

describe('generated documentation', () => {
  for (const [path, render] of Object.entries(GENERATED_DOCS)) {
    it(`${path} is fresh (regenerate with \`npm run gen:docs\`)`, () => {
      expect(readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')).toBe(render());
    });
  }

  it('documents only sections the processes accept at the top level', () => {
    for (const name of Object.keys(ALL_SECTIONS))
      expect(SECTION_NAMES as readonly string[], name).toContain(name);
  });
});
