import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layering of the house, checked on every import (static, `export … from` and dynamic):
 * contracts → zod only; common → contracts; each service → contracts and common, never another service;
 * dev, tests, bench and scripts → anything, and nothing at run time imports them.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SERVICES = ['broker', 'agents', 'collector', 'api', 'dashboards'];
const ANY = ['dev', 'tests', 'bench', 'scripts'];
const FOLDERS = ['contracts', 'common', ...SERVICES];

/** Top-level folders a folder's code may import from (besides itself). */
const ALLOWED: Record<string, string[]> = {
  contracts: [],
  common: ['contracts'],
  ...Object.fromEntries(SERVICES.map((s) => [s, ['contracts', 'common']])),
};
/** Packages contracts may import (beside node: built-ins). */
const CONTRACT_PACKAGES = ['zod'];

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'generated') continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const IMPORT_RE =
  /(?:^|[^\w.])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(IMPORT_RE)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

/** The top-level folder a relative specifier of `file` lands in. */
function folderOf(file: string, spec: string): string {
  return relative(ROOT, resolve(dirname(file), spec)).split(sep)[0]!;
}

function violations(folder: string): string[] {
  const out: string[] = [];
  for (const file of sources(join(ROOT, folder))) {
    for (const spec of importsOf(file)) {
      const where = `${relative(ROOT, file)} → ${spec}`;
      if (spec.startsWith('.')) {
        const to = folderOf(file, spec);
        if (to !== folder && !ALLOWED[folder]!.includes(to)) out.push(where);
      } else if (folder === 'contracts' && !spec.startsWith('node:') && !CONTRACT_PACKAGES.includes(spec)) {
        out.push(where);
      }
    }
  }
  return out;
}

describe('layering', () => {
  for (const folder of FOLDERS)
    it(`${folder}/ imports only ${[folder, ...ALLOWED[folder]!].join(', ')}${folder === 'contracts' ? ' and zod' : ''}`, () => {
      expect(violations(folder)).toEqual([]);
    });

  it('finds the imports it checks (a scanner that sees nothing would pass everything)', () => {
    const all = FOLDERS.flatMap((f) => sources(join(ROOT, f)).flatMap(importsOf));
    expect(all.length).toBeGreaterThan(300); // 440 when this was written
    expect(all).toContain('zod');
    expect(all.some((s) => s.startsWith('../') && s.includes('contracts/'))).toBe(true);
  });

  it('no module imports the API app but its server: routes get what they need from api/http/ (no circle)', () => {
    const app = join(ROOT, 'api', 'app.ts');
    const importers = sources(join(ROOT, 'api'))
      .filter((file) =>
        importsOf(file).some(
          (s) => s.startsWith('.') && resolve(dirname(file), s) === app.replace(/\.ts$/, '.js'),
        ),
      )
      .map((file) => relative(ROOT, file));
    expect(importers).toEqual(['api/server.ts']);
  });

  it(`nothing at run time imports ${ANY.join(', ')}`, () => {
    const bad = FOLDERS.flatMap((f) =>
      sources(join(ROOT, f)).flatMap((file) =>
        importsOf(file)
          .filter((s) => s.startsWith('.') && ANY.includes(folderOf(file, s)))
          .map((s) => `${relative(ROOT, file)} → ${s}`),
      ),
    );
    expect(bad).toEqual([]);
  });
});
