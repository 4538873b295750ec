import type { ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Daemons we start for tests and the quickstart (influxd, mosquitto, snmpd) must never outlive us. Two nets:
 * - an `exit` hook kills the child, and removes its temporary folder, if this process exits without stopping it;
 * - when `CAMPUS_FLEET_TEST_PID_DIR` is set (the test run's global setup sets it), each child's pid is recorded there
 *   while it runs (with its temporary folder), so the run's teardown can kill what a crashed or killed worker
 *   left behind and remove its folder.
 */
// Deliberately outside the CFM_ prefix, which the config loader reads as overrides.
export const CHILD_PID_DIR_ENV = 'CAMPUS_FLEET_TEST_PID_DIR';

/** Children to kill, and folders to remove, when this process exits: one `exit` hook for all of them. */
const live = new Set<ChildProcess>();
const folders = new Set<string>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const p of live) p.kill('SIGKILL');
    for (const dir of folders) removeWhileDying(dir);
  });
}

export function trackChild(proc: ChildProcess, what: string, tempDir?: string): void {
  const pid = proc.pid;
  if (pid === undefined) return;
  hookExit();
  live.add(proc);
  // Its temporary folder too (its owner's dispose() removes it first when it stops it), even if the child ended
  // before us: a daemon that got the same Ctrl-C as this process (a terminal's or `timeout`'s signal goes to the
  // whole process group) is gone by the time this process exits.
  if (tempDir) folders.add(tempDir);
  const dir = process.env[CHILD_PID_DIR_ENV];
  const file = dir ? join(dir, String(pid)) : undefined;
  if (file) {
    mkdirSync(dir!, { recursive: true });
    writeFileSync(file, JSON.stringify({ what, tempDir }));
  }
  proc.once('exit', () => {
    live.delete(proc);
    if (file) rmSync(file, { force: true });
  });
}

/** A temporary folder removed when this process exits, however it ends (bench/args.ts turns signals into exits). */
export function removeAtExit(dir: string): void {
  hookExit();
  folders.add(dir);
}

/**
 * Removes `dir` while the daemon that wrote into it dies (it was just killed, or is shutting down after the same
 * signal, and may still be writing a file): tried again for up to a second. Synchronous: it runs in an `exit`
 * hook. What is left is the test run's teardown's (CAMPUS_FLEET_TEST_PID_DIR) or the next reboot's.
 */
function removeWhileDying(dir: string): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      rmSync(dir, { recursive: true, force: true });
      return;
    } catch {
      Atomics.wait(pause, 0, 0, 20);
    }
  }
}
