import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileWatch } from '../../common/json-file.js';
import { waitFor } from '../helpers/influx.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanups.splice(0).reverse()) f();
});

function watched(everyMs: number): { file: string; watch: FileWatch } {
  const dir = mkdtempSync(join(tmpdir(), 'cfm-json-file-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'watched.yaml');
  writeFileSync(file, 'a: 1\n');
  const watch = new FileWatch(file, everyMs);
  watch.mark();
  return { file, watch };
}

describe('FileWatch.poll', () => {
  it('calls back once per change, and sees a change made while the callback ran', async () => {
    const { file, watch } = watched(10);
    let calls = 0;
    let release: () => void = () => {};
    const stop = watch.poll(async () => {
      calls++;
      if (calls === 1) await new Promise<void>((r) => (release = r));
    });
    cleanups.push(stop);
    writeFileSync(file, 'a: 22\n'); // each write a new size: timestamps may be coarser than the test
    await waitFor(() => calls === 1, { what: 'the first change' });
    writeFileSync(file, 'a: 333\n'); // while the first callback still runs
    release();
    await waitFor(() => calls === 2, { what: 'the change made meanwhile' });
    // A third change is a third call: the second look marked the file, so no call repeats in between.
    writeFileSync(file, 'a: 4444\n');
    await waitFor(() => calls >= 3, { what: 'the third change' });
    expect(calls).toBe(3);
  });

  it('calls back when the file is removed', async () => {
    const { file, watch } = watched(10);
    let calls = 0;
    cleanups.push(watch.poll(async () => void calls++));
    rmSync(file);
    await waitFor(() => calls === 1, { what: 'the removal' });
    expect(watch.differs()).toBe(false);
  });
});
