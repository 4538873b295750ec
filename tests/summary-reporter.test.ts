import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';

// CI reads the closing line; a failing hook must not print "0 failed" (it once printed "464 passed, 0 failed,
// 1 skipped" for a run whose beforeAll failed).
it('counts failing beforeAll and afterAll hooks as failures in the closing line', () => {
  const r = spawnSync(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', '--config', 'tests/fixtures/reporter/vitest.config.ts'],
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, CI: 'true' } },
  );
  const lines = r.stdout.trim().split('\n');
  expect(lines.at(-1)).toBe('2 passed, 2 failed, 2 skipped');
  expect(r.stdout).toContain('2 failures outside tests');
  expect(r.status).not.toBe(0);
});
