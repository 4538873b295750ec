import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/**
 * No EBADENGINE from `npm ci` on the Node the README names: every package the lock installs admits the oldest
 * Node that `package.json` `engines` allows, and the production ones (what the services and the bundled agent
 * run on) admit any Node 20. A dependency that moves to a newer Node (cookie@2 wants 22) fails here, not on a
 * user's first `npm ci`; the fix is an `overrides` entry or another version of whoever pulls it in.
 */
const read = (file: string) => JSON.parse(readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8'));
const lock = read('package-lock.json') as {
  packages: Record<string, { dev?: boolean; engines?: Record<string, string> | string[] }>;
};
const floor = /^>=\s*(\d+(?:\.\d+){0,2})$/.exec(
  (read('package.json') as { engines: { node: string } }).engines.node,
);

type Version = [number, number, number];
const version = (v: string): Version => {
  const [a = 0, b = 0, c = 0] = v.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : 0));
  return [a, b, c];
};
const cmp = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** Whether `v` satisfies an npm `engines` range (the forms the lock holds: `*`, `>=`, `>`, `^`, `~`, `x`, `||`). */
function satisfies(v: string, range: string): boolean {
  const at = version(v);
  return range.split('||').some((alt) =>
    alt
      .trim()
      .replace(/([<>=^~]+)\s+/g, '$1')
      .split(/\s+/)
      .every((c) => {
        const m = /^([<>=^~]*)v?(.*)$/.exec(c)!;
        const [op, rest] = [m[1]!, m[2]!];
        if (rest === '*' || rest === '' || rest === 'x') return true;
        const want = version(rest);
        const parts = rest.split('.').filter((p) => /^\d+$/.test(p)).length;
        switch (op) {
          case '>=':
            return cmp(at, want) >= 0;
          case '>':
            return cmp(at, want) > 0;
          case '<':
            return cmp(at, want) < 0;
          case '<=':
            return cmp(at, want) <= 0;
          case '^':
            return cmp(at, want) >= 0 && at[0] === want[0];
          case '~':
            return cmp(at, want) >= 0 && at[0] === want[0] && (parts < 2 || at[1] === want[1]);
          default:
            // `20`, `20.x`, `20.19.0`: equal in the parts given.
            return at.slice(0, parts).every((n, i) => n === want[i]);
        }
      }),
  );
}

/** `engines.node` of a lock entry (some old packages write `["node >= 6.0"]`). */
function nodeRange(engines: Record<string, string> | string[] | undefined): string | undefined {
  if (Array.isArray(engines)) return engines.find((e) => e.startsWith('node'))?.replace(/^node\s*/, '');
  return engines?.node;
}

describe('engines', () => {
  it('reads the ranges as npm does', () => {
    const cases: [version: string, range: string, admits: boolean][] = [
      ['20.19.0', '^20.19.0 || >=22.12.0', true],
      ['20.18.3', '^20.19.0 || >=22.12.0', false],
      ['20.0.0', '>=22', false],
      ['20.0.0', '>= 10.x', true],
      ['20.0.0', '^12.22.0 || ^14.17.0 || >=16.0.0', true],
      ['21.0.0', '^20.0.0 || ^22.0.0 || >=24.0.0', false],
      ['20.0.0', '*', true],
    ];
    for (const [v, range, admits] of cases) expect(satisfies(v, range), `${v} in ${range}`).toBe(admits);
  });

  it('package.json states the oldest Node as `>=X.Y`', () => {
    expect(floor, 'engines.node must be ">=X.Y[.Z]"').not.toBeNull();
  });

  it('every locked package admits the oldest Node of package.json; production packages admit any Node 20', () => {
    const refused: string[] = [];
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = nodeRange(p.engines);
      if (!path || range === undefined) continue;
      if (!satisfies(floor![1]!, range)) refused.push(`${path}: node ${range} refuses ${floor![1]}`);
      if (!p.dev && !satisfies('20.0.0', range))
        refused.push(`${path} (production): node ${range} refuses 20.0.0`);
    }
    expect(refused).toEqual([]);
  });
});
