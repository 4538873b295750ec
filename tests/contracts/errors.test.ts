import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, RETIRED_ERROR_CODES } from '../../contracts/errors.js';

/**
 * The error-code catalogue against its uses and its documentation, in the manner of fastify's errors test
 * (test/internals/errors.test.js): every code is raised somewhere, every code is documented, and no document
 * names a code that is not in the catalogue. A code nobody raises is a promise nobody keeps.
 */
const repo = new URL('../..', import.meta.url).pathname;
/** Every file below `dir` (relative to the repository), skipping dependencies, output and run-time data. */
const walk = (dir: string): string[] =>
  readdirSync(join(repo, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory())
      return ['node_modules', 'dist', 'var', '.git'].includes(e.name) || e.name.startsWith('.')
        ? []
        : walk(path);
    return [path];
  });
const files = walk('.').map((f) => relative('.', f));
/** The folders tsconfig.build.json compiles: what runs, not its tests or benchmarks. */
const SOURCE_FOLDERS = [
  'contracts',
  'common',
  'broker',
  'agents',
  'collector',
  'api',
  'dashboards',
  'scripts',
];
const sources = files
  .filter(
    (f) => f.endsWith('.ts') && SOURCE_FOLDERS.includes(f.split('/')[0]!) && f !== 'contracts/errors.ts',
  )
  .map((f) => ({ file: f, text: readFileSync(join(repo, f), 'utf8') }));
const docs = files
  .filter((f) => f.endsWith('.md'))
  .map((f) => ({ file: f, text: readFileSync(join(repo, f), 'utf8') }));
const catalogue = readFileSync(join(repo, 'docs/errors.md'), 'utf8');

const active = Object.keys(ERROR_CODES);
const retired = Object.keys(RETIRED_ERROR_CODES);
/** `CFM_API`, `CFM_STORAGE`, …: a word of one of these families is an error code wherever it is written. */
const families = [...new Set([...active, ...retired].map((c) => c.split('_').slice(0, 2).join('_')))];
const codeLike = new RegExp(`\\b(?:${families.join('|')})_[A-Z0-9]+(?:_[A-Z0-9]+)*\\b(?!_)`, 'g');

/** The codes of the table rows of one `## heading` section of docs/errors.md. */
function rows(heading: string): string[] {
  const section = catalogue.split(/^## /m).find((s) => s.startsWith(heading));
  return [...(section ?? '').matchAll(/^\| `(CFM_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]!);
}

describe('error codes', () => {
  it('sees the source and the documents', () => {
    expect(sources.length).toBeGreaterThan(50);
    expect(docs.map((d) => d.file)).toEqual(
      expect.arrayContaining(['README.md', 'api/README.md', 'docs/errors.md']),
    );
  });

  it('every code in the catalogue is raised somewhere in the source', () => {
    const unused = active.filter((code) => !sources.some((s) => s.text.includes(`'${code}'`)));
    expect(unused).toEqual([]);
  });

  it('every code in the catalogue is documented in docs/errors.md, once', () => {
    const documented = catalogue.split(/^## /m).flatMap((s) => (s.startsWith('Retired') ? [] : rows(s)));
    expect([...documented].sort()).toEqual([...active].sort());
  });

  it('no document names a code the catalogue does not have', () => {
    const unknown = docs.flatMap((d) =>
      [...d.text.matchAll(codeLike)]
        .map((m) => m[0])
        .filter((c) => !active.includes(c) && !retired.includes(c))
        .map((c) => `${d.file}: ${c}`),
    );
    expect(unknown).toEqual([]);
    // The check itself finds codes where they are written.
    expect('`CFM_API_NOT_FOUND`, CFM_API__MQTT__URL'.match(codeLike)).toEqual(['CFM_API_NOT_FOUND']);
  });

  it('retired codes are never reused: not active, not raised, documented as retired', () => {
    expect(active.filter((c) => retired.includes(c))).toEqual([]);
    const raised = retired.filter((code) => sources.some((s) => s.text.includes(code)));
    expect(raised).toEqual([]);
    expect([...rows('Retired')].sort()).toEqual([...retired].sort());
  });
});
