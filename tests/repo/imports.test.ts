import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The layering of the house, checked on every import (static, `export … from`, side-effect and dynamic), as
 * TypeScript's own pre-processor reads them:
 * contracts → zod only; common → contracts; each service → contracts and common, never another service;
 * a composition root (a service's `main.ts`, the process it starts, and `compose.ts`, what runs in it) → any
 * service; dev, tests, bench and scripts → anything, and nothing at run time imports them.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SERVICES = ['broker', 'agents', 'collector', 'alerting', 'rollup', 'api', 'dashboards'];
const ANY = ['dev', 'tests', 'bench', 'scripts'];
/** The web console runs in the browser: it may take only contracts' plain data (no Node API, no zod). */
const FOLDERS = ['contracts', 'common', ...SERVICES, 'console'];

/** Top-level folders a folder's code may import from (besides itself). */
const ALLOWED: Record<string, string[]> = {
  contracts: [],
  common: ['contracts'],
  console: ['contracts'],
  ...Object.fromEntries(SERVICES.map((s) => [s, ['contracts', 'common']])),
};
/** Packages contracts may import (beside node: built-ins). */
const CONTRACT_PACKAGES = ['zod'];

/** A composition root decides what runs in one process; it may wire several services together. */
const ROOT_FILES = ['main.ts', 'compose.ts'];
const isCompositionRoot = (file: string) => {
  const parts = relative(ROOT, file).split(sep);
  return parts.length === 2 && ROOT_FILES.includes(parts[1]!) && SERVICES.includes(parts[0]!);
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'generated' || e.name === 'dist') continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mts|tsx)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName);
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
        if (to === folder || ALLOWED[folder]!.includes(to)) continue;
        if (isCompositionRoot(file) && SERVICES.includes(to)) continue;
        out.push(where);
      } else if (folder === 'contracts' && !spec.startsWith('node:') && !CONTRACT_PACKAGES.includes(spec)) {
        out.push(where);
      }
    }
  }
  return out;
}

describe('layering', () => {
  for (const folder of FOLDERS)
    it(`${folder}/ imports only ${[folder, ...ALLOWED[folder]!].join(', ')}${folder === 'contracts' ? ' and zod' : ''}${SERVICES.includes(folder) ? ' (its main.ts, compose.ts: any service)' : ''}`, () => {
      expect(violations(folder)).toEqual([]);
    });

  it('finds the imports it checks (a scanner that sees nothing would pass everything)', () => {
    const all = FOLDERS.flatMap((f) => sources(join(ROOT, f)).flatMap(importsOf));
    expect(all.length).toBeGreaterThan(300); // 440 when this was written
    expect(all).toContain('zod');
    expect(all.some((s) => s.startsWith('../') && s.includes('contracts/'))).toBe(true);
  });

  it('nothing imports a main.ts (where a process starts), and only composition roots, dev, tests, bench and scripts import a compose.ts', () => {
    const bad = [...FOLDERS, ...ANY].flatMap((f) =>
      sources(join(ROOT, f)).flatMap((file) =>
        importsOf(file)
          .filter(
            (s) =>
              s.startsWith('.') &&
              (basename(s) === 'main.js' ||
                (basename(s) === 'compose.js' && !isCompositionRoot(file) && !ANY.includes(f))),
          )
          .map((s) => `${relative(ROOT, file)} → ${s}`),
      ),
    );
    expect(bad).toEqual([]);
  });

  it('no module imports the API app but the API server: routes get what they need from api/http/ (no circle)', () => {
    const app = join(ROOT, 'api', 'app.ts');
    const importers = FOLDERS.flatMap((f) => sources(join(ROOT, f)))
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
