import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHILD_PID_DIR_ENV } from '../dev/children.js';

/**
 * The safety net under every test's own cleanup: daemons record their pids in a folder for the run; whatever
 * is still listed at the end (a worker crashed or was killed before its afterAll) is killed here, and named,
 * so a leak is visible and fixed rather than left running on the machine.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'cfm-test-children-'));
  process.env[CHILD_PID_DIR_ENV] = dir;
  return () => {
    for (const pid of readdirSync(dir)) {
      const { what, tempDir } = JSON.parse(readFileSync(join(dir, pid), 'utf8')) as {
        what: string;
        tempDir?: string;
      };
      try {
        process.kill(Number(pid), 'SIGKILL');
        process.stderr.write(`test teardown: killed a leftover ${what} (pid ${pid})\n`);
      } catch {
        // already gone
      }
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  };
}
