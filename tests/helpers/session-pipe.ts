import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../dev/ports.js';

/**
 * A fake session helper (agents/sources/activity/README.md, "Sessions"): fake-powershell.mjs in its server
 * mode, serving the helper's protocol on the Unix socket `<dir>/cfm-activity-<session>` — what the scheduled
 * task's powershell.exe serves as `\\.\pipe\cfm-activity-<session>` on Windows — replaying `fixture`
 * (tests/fixtures/windows/), one plan per connection (fake-powershell.mjs says what a plan can do).
 */

export const FAKE_POWERSHELL = fileURLToPath(new URL('./fake-powershell.mjs', import.meta.url));
const FIXTURES = fileURLToPath(new URL('../fixtures/windows/', import.meta.url));

export interface FakeSessionHelper {
  process: ChildProcess;
  /** What it logged: `listen <pid>`, `connect <n>`, `close <n>`. */
  events(): string[];
  connects(): number;
  /** Ends it (the user logged off) and waits until it is gone. */
  stop(): Promise<void>;
}

let started = 0;

export async function fakeSessionHelper(
  dir: string,
  session: number,
  fixture: string,
  connections: Record<string, unknown>[] = [{}],
): Promise<FakeSessionHelper> {
  const id = `${session}-${started++}`;
  const plan = join(dir, `plan-${id}.json`);
  const logFile = join(dir, `server-${id}.log`);
  writeFileSync(plan, JSON.stringify({ starts: connections }));
  writeFileSync(logFile, '');
  const p = spawn(process.execPath, [FAKE_POWERSHELL], {
    stdio: 'ignore',
    env: {
      ...process.env,
      FAKE_PS_LISTEN: join(dir, `cfm-activity-${session}`),
      FAKE_PS_FIXTURE: join(FIXTURES, fixture),
      FAKE_PS_PLAN: plan,
      FAKE_PS_LOG: logFile,
    },
  });
  const closed = new Promise<void>((resolve) => p.once('close', () => resolve()));
  const events = () => readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
  await waitFor(() => events().some((l) => l.startsWith('listen ')), {
    what: 'the fake session helper listening',
  });
  return {
    process: p,
    events,
    connects: () => events().filter((l) => l.startsWith('connect ')).length,
    stop: async () => {
      if (p.exitCode === null && p.signalCode === null) p.kill();
      await closed;
    },
  };
}

/**
 * The activity in session-helper.jsonl's answers, in order (the fixture's README): 希沃白板 in use; Chrome on
 * the national platform, its title naming a teacher — only the site's name is kept; locked, the display off.
 */
export const SESSION_HELPER_ACTIVITY = [
  { source: 'windows', idleS: 3, foreground: 'EasiNote.exe', screenOn: true },
  {
    source: 'windows',
    idleS: 4,
    foreground: 'chrome.exe',
    teachingSite: '国家中小学智慧教育平台',
    screenOn: true,
  },
  { source: 'windows', idleS: 600, screenOn: false },
] as const;
