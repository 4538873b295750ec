import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * Every command the README and docs/quickstart.md name answers `--help` and `-h` with its usage on stdout and
 * exit 0, and a wrong option with one line on stderr naming it and where the usage is, exit 2 — no stack trace.
 * Each is run as `npm run <script> -- …` runs it: a real child process of its entry point (common/cli.ts).
 */
const repo = fileURLToPath(new URL('../../', import.meta.url));
const exec = promisify(execFile);

async function run(entry: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, ['--import', 'tsx', entry, ...args], {
      cwd: repo,
      timeout: 60_000,
    });
    return { code: 0, ...r };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** Each command: its entry point and arguments, how its usage starts, and options its usage must list. */
const COMMANDS: { entry: string; args: string[]; usage: string; lists: string[]; name: string }[] = [
  {
    entry: 'scripts/stack.ts',
    args: [],
    name: 'stack',
    usage: 'npm run stack --',
    lists: ['--schools N', '--data-dir DIR', '--print-config', '--config FILE'],
  },
  {
    entry: 'collector/main.ts',
    args: [],
    name: 'collector',
    usage: 'npm run collector --',
    lists: ['--config FILE', '--print-config'],
  },
  {
    entry: 'agents/classroom/main.ts',
    args: [],
    name: 'agent',
    usage: 'npm run agent --',
    lists: ['--config FILE', '--print-config'],
  },
  {
    entry: 'agents/snmp/main.ts',
    args: [],
    name: 'poller',
    usage: 'npm run poller --',
    lists: ['--config FILE', '--print-config'],
  },
  {
    entry: 'broker/main.ts',
    args: [],
    name: 'broker',
    usage: 'npm run broker -- run',
    lists: ['npm run broker -- users add|rotate|revoke|list'],
  },
  {
    entry: 'broker/main.ts',
    args: ['run'],
    name: 'broker',
    usage: 'npm run broker -- run',
    lists: ['--config FILE', '--print-config'],
  },
  {
    entry: 'broker/main.ts',
    args: ['users'],
    name: 'broker users',
    usage: 'npm run broker -- users add <username>',
    lists: ['--role device|poller|collector|reader', '--school SCHOOL', '--password-stdin', '--file FILE'],
  },
  {
    entry: 'broker/main.ts',
    args: ['users', 'add'],
    name: 'broker users',
    usage: 'npm run broker -- users add <username>',
    lists: ['--schools S1,S2'],
  },
  {
    entry: 'api/main.ts',
    args: [],
    name: 'api',
    usage: 'npm run api -- run [--role all|api|worker]',
    lists: ['npm run api -- tokens add <name>', 'npm run api -- import <file>', 'npm run api -- rollup'],
  },
  {
    entry: 'api/main.ts',
    args: ['run'],
    name: 'api run',
    usage: 'npm run api -- run',
    lists: ['--role all|api|worker', '(default all)', '--config FILE', '--print-config'],
  },
  {
    entry: 'api/main.ts',
    args: ['tokens'],
    name: 'api tokens',
    usage: 'npm run api -- tokens add <name>',
    lists: ['--role admin|ops|auditor', '--scope REGION/PATH', '--config FILE'],
  },
  {
    entry: 'api/main.ts',
    args: ['tokens', 'add'],
    name: 'api tokens',
    usage: 'npm run api -- tokens add <name>',
    lists: ['--scope REGION/PATH'],
  },
  {
    entry: 'api/main.ts',
    args: ['import'],
    name: 'api import',
    usage: 'npm run api -- import <file>',
    lists: ['--replace regions,schools,classrooms,devices', '--config FILE'],
  },
  {
    entry: 'api/main.ts',
    args: ['rollup'],
    name: 'api rollup',
    usage: 'npm run api -- rollup --from YYYY-MM-DD',
    lists: ['--from YYYY-MM-DD', '--to YYYY-MM-DD', '--config FILE'],
  },
];

/** Runs `jobs` two at a time (the machine's cores are shared). */
async function inPairs<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < jobs.length; i += 2)
    out.push(...(await Promise.all(jobs.slice(i, i + 2).map((j) => j()))));
  return out;
}

describe('--help and wrong options on every command', () => {
  it('--help prints the usage with every option and exits 0; -h is the same', async () => {
    const runs = await inPairs(
      COMMANDS.flatMap((c) => [
        async () => ({ c, flag: '--help', r: await run(c.entry, [...c.args, '--help']) }),
        // -h, among other options (help wins, whatever else is on the line): once per program.
        ...(c.args.length === 0
          ? [async () => ({ c, flag: '-h', r: await run(c.entry, ['--bogus', '-h']) })]
          : []),
      ]),
    );
    const help = new Map<string, string>();
    for (const { c, flag, r } of runs) {
      const what = `${c.entry} ${c.args.join(' ')} ${flag}: ${r.stderr}`;
      expect(r.code, what).toBe(0);
      expect(r.stderr, what).toBe('');
      expect(r.stdout, what).toMatch(new RegExp(`^usage: ${c.usage.replace(/[|()[\]]/g, '\\$&')}`));
      for (const l of c.lists) expect(r.stdout, what).toContain(l);
      expect(r.stdout, what).toContain('-h, --help');
      const key = `${c.entry} ${c.args.join(' ')}`;
      if (help.has(key)) expect(r.stdout, what).toBe(help.get(key));
      help.set(key, r.stdout);
    }
  }, 300_000);

  it('an unknown option, a missing value or a stray argument: one line naming it, exit 2', async () => {
    const cases = [
      // Each command that takes options (a subcommand's action, `tokens add`, parses as `tokens` does).
      ...COMMANDS.filter(
        (c) => c.args.length === 1 || !['broker/main.ts', 'api/main.ts'].includes(c.entry),
      ).map((c) => ({ c, args: [...c.args, '--bogus'], says: "unknown option '--bogus'" })),
      { c: COMMANDS[1]!, args: ['--config'], says: "--config <value>' argument missing" },
      { c: COMMANDS[3]!, args: ['stray'], says: "unexpected argument 'stray'" },
      { c: COMMANDS[8]!, args: ['frob'], says: 'unknown command frob' },
      { c: COMMANDS[4]!, args: ['frob'], says: 'unknown command frob' },
      {
        c: COMMANDS[9]!,
        args: ['run', '--role', 'everything'],
        says: '--role must be one of all, api, worker',
      },
      { c: COMMANDS[0]!, args: ['--schools', 'many'], says: '--schools must be an integer 3..600' },
    ];
    const runs = await inPairs(cases.map((k) => async () => ({ ...k, r: await run(k.c.entry, k.args) })));
    for (const { c, args, says, r } of runs) {
      const what = `${c.entry} ${args.join(' ')}: ${r.stderr}`;
      expect(r.code, what).toBe(2);
      expect(r.stdout, what).toBe('');
      // One line, prefixed by the command; no stack trace.
      expect(r.stderr.split('\n'), what).toHaveLength(2);
      expect(r.stderr, what).toContain(says);
      expect(r.stderr, what).not.toMatch(/\n\s+at /);
    }
    const unknown = runs.find((x) => x.c.name === 'api tokens' && x.args.includes('--bogus'))!;
    expect(unknown.r.stderr).toBe(
      "api tokens: unknown option '--bogus'; see `npm run api -- tokens --help`\n",
    );
  }, 300_000);
});
