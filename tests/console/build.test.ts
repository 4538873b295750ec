import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildConsole } from '../../console/build.js';

/** The committed bundle (console/dist, served by the API) is what `npm run gen:console` builds from the sources. */
describe('console/dist', () => {
  it('is up to date with console/src (run `npm run gen:console`)', async () => {
    const out = new URL('../../console/dist/', import.meta.url).pathname;
    const result = await buildConsole(out, false);
    const files = result.outputFiles ?? [];
    expect(files.length).toBe(2);
    for (const f of files) expect(f.text, f.path).toBe(readFileSync(f.path, 'utf8'));
  });
});
