import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { waitFor } from '../helpers/influx.js';
import { alive } from '../helpers/process.js';

// A benchmark (or anything using dev/children.ts) that is stopped by Ctrl-C or SIGTERM kills the daemons it
// started and removes their temporary folders and its own (bench/args.ts turns the signal into an exit), and a
// benchmark's command line refuses what it cannot use in one line with exit 2. Real processes: a script run by
// tsx as `npm run bench:*` runs one, a real `sleep` as the daemon, real signals.

const ROOT = new URL('../..', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'cfm-children-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs `source` (TypeScript) with tsx as `npm run bench:*` does; its output is collected. */
function run(name: string, source: string, args: string[] = []) {
  const file = join(work, `${name}.ts`);
  writeFileSync(file, source);
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A test that fails before it stops the script does not leave it running.
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (b: Buffer) => (out.stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out.stderr += b.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      rmSync(file, { force: true });
      resolve({ code, signal });
    }),
  );
  return { child, out, exited };
}

describe('a benchmark stopped by a signal', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    "%s: exits %i, its daemon killed, the daemon's folder and its own removed",
    async (signal, code) => {
      const daemonDir = mkdtempSync(join(work, 'daemon-'));
      const { child, out, exited } = run(
        `signal-${signal}`,
        `import { spawn } from 'node:child_process';
import { benchTempDir } from '${ROOT}bench/args.js';
import { trackChild } from '${ROOT}dev/children.js';
const own = benchTempDir('cfm-children-test-bench-');
const daemon = spawn('sleep', ['60'], { stdio: 'ignore' });
trackChild(daemon, 'sleep', ${JSON.stringify(daemonDir)});
console.log(JSON.stringify({ own, daemon: daemon.pid }));
setInterval(() => {}, 1000);
`,
      );
      await waitFor(() => out.stdout.includes('\n'), { what: 'the script to start' });
      const { own, daemon } = JSON.parse(out.stdout) as { own: string; daemon: number };
      expect(existsSync(own) && existsSync(daemonDir) && alive(daemon)).toBe(true);
      (child as ChildProcess).kill(signal);
      expect(await exited).toEqual({ code, signal: null });
      await waitFor(() => !alive(daemon), { what: 'the daemon to be gone' });
      expect(existsSync(own)).toBe(false);
      expect(existsSync(daemonDir)).toBe(false);
      expect(out.stderr).toBe('');
    },
  );
});

/** A benchmark's command line: two flags, a count (≥ 1) and a gap (≥ 0), printed once taken. */
const ARGS_SCRIPT = `import { benchArgs, numberArg } from '${ROOT}bench/args.js';
const { values } = benchArgs('bench:test', {
  options: { count: { type: 'string', default: '3' }, gap: { type: 'string', default: '0' } },
});
console.log(numberArg('bench:test', 'count', values.count), numberArg('bench:test', 'gap', values.gap, 0));
`;

describe("a benchmark's command line", () => {
  it.each([
    [['--nope'], "bench:test: Unknown option '--nope'"],
    [['--count'], "bench:test: Option '--count <value>' argument missing"],
    [['--count', 'abc'], 'bench:test: --count abc: expected a number ≥ 1'],
    [['--count', ''], 'bench:test: --count : expected a number ≥ 1'],
    [['--count=0'], 'bench:test: --count 0: expected a number ≥ 1'],
    [['--gap=-1'], 'bench:test: --gap -1: expected a number ≥ 0'],
    [['--count', 'Infinity'], 'bench:test: --count Infinity: expected a number ≥ 1'],
  ])('%j: one line, exit 2', async (args, line) => {
    const { out, exited } = run('args', ARGS_SCRIPT, args);
    expect(await exited).toEqual({ code: 2, signal: null });
    expect(out.stderr).toBe(`${line}\n`);
    expect(out.stdout).toBe('');
  });

  it('takes what it can use', async () => {
    const { out, exited } = run('args-ok', ARGS_SCRIPT, ['--count', '12.5']);
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(out.stdout).toBe('12.5 0\n');
  });
});
