import type { ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Daemons we start for tests and the quickstart (influxd, mosquitto, snmpd) must never outlive us. Two nets:
 * - an `exit` hook kills the child if this process exits without stopping it;
 * - when `CAMPUS_FLEET_TEST_PID_DIR` is set (the test run's global setup sets it), each child's pid is recorded there
 *   while it runs (with its temporary folder), so the run's teardown can kill what a crashed or killed worker
 *   left behind and remove its folder.
 */
// Deliberately outside the CFM_ prefix, which the config loader reads as overrides.
export const CHILD_PID_DIR_ENV = 'CAMPUS_FLEET_TEST_PID_DIR';

export function trackChild(proc: ChildProcess, what: string, tempDir?: string): void {
  const pid = proc.pid;
  if (pid === undefined) return;
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  const dir = process.env[CHILD_PID_DIR_ENV];
  const file = dir ? join(dir, String(pid)) : undefined;
  if (file) {
    mkdirSync(dir!, { recursive: true });
    writeFileSync(file, JSON.stringify({ what, tempDir }));
  }
  proc.once('exit', () => {
    process.off('exit', killOnExit);
    if (file) rmSync(file, { force: true });
  });
}
