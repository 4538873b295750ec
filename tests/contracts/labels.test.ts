import { readFileSync } from 'node:fs';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { UPLINK_STATES } from '../../common/live.js';
import { LABELS, labelOf, REASON_CODES } from '../../contracts/labels.js';

const root = new URL('../..', import.meta.url).pathname;

describe('the Chinese labels (contracts/labels.ts)', () => {
  it('bundle for a browser on their own: no zod, no Node API, nothing but the file itself', async () => {
    const out = await build({
      entryPoints: [`${root}contracts/labels.ts`],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    expect(Object.keys(out.metafile.inputs)).toEqual(['contracts/labels.ts']);
    const mod = await import(
      `data:text/javascript;base64,${Buffer.from(out.outputFiles[0]!.text).toString('base64')}`
    );
    expect(mod.LABELS).toEqual(LABELS);
  });

  it('label every reason code, and api/README.md lists each code with its label', () => {
    const readme = readFileSync(`${root}api/README.md`, 'utf8');
    for (const code of REASON_CODES) {
      expect(LABELS.reason[code]).toMatch(/\p{Script=Han}/u);
      expect(readme).toContain(`| \`${code}\` | ${LABELS.reason[code]} |`);
    }
  });

  it('label every uplink state the API sends (common/live.ts), and nothing else', () => {
    expect(Object.keys(LABELS.uplinkState).sort()).toEqual([...UPLINK_STATES].sort());
    for (const s of UPLINK_STATES) expect(LABELS.uplinkState[s]).toMatch(/\p{Script=Han}/u);
  });

  it('show an unknown code as itself (a newer server, an older console)', () => {
    expect(labelOf('deviceKind', 'projector')).toBe('投影仪');
    expect(labelOf('deviceKind', 'hologram')).toBe('hologram');
    expect(labelOf('verdict', 'toString')).toBe('toString');
  });
});
