import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SECTION_NAMES } from '../common/cli.js';
import { ALL_SECTIONS, GENERATED_DOCS } from '../scripts/gen-docs.js';
import { brokenLinks, REPO } from './helpers/markdown.js';

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

/** The repository's own documentation: README.md, docs/ and each folder's README, as git tracks them. */
const markdown = execFileSync('git', ['ls-files', '*.md'], { cwd: REPO, encoding: 'utf8' })
  .split('\n')
  .filter((f) => f && existsSync(join(REPO, f)));

describe('links in the documentation', () => {
  it('every relative link points to a file of the repository (and to a heading it has)', () => {
    expect(markdown.length).toBeGreaterThan(15);
    expect(markdown.flatMap(brokenLinks)).toEqual([]);
  });

  it('the domain background is in the repository, and the README points there', () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    expect(readme).toContain('(docs/domain.md)');
    expect(readme).not.toContain('DOMAIN.md');
    const domain = readFileSync(join(REPO, 'docs/domain.md'), 'utf8');
    for (const term of ['校校通', '班班通', '人人通', '生机比', '教育城域网', '调休', 'PJLink'])
      expect(domain, term).toContain(term);
  });
});
