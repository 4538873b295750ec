import { afterEach, describe, expect, it, vi } from 'vitest';
import { type CliCommand, helpText, parseCli, wantsHelp } from '../../common/cli.js';

/**
 * The command-line parser every entry point uses (common/cli.ts), in this process: what `--help` prints and
 * how a wrong line ends. tests/common/cli.test.ts runs every real entry point; this one covers the parser's
 * own cases, with `process.exit` observed instead of taken.
 */
const CMD = {
  name: 'api tokens',
  command: 'npm run api -- tokens',
  synopsis: ['add <name> --role admin|ops|auditor [--scope REGION/PATH]', 'list', ''],
  about:
    'Adds, lists and revokes API tokens. A new token is printed once, on stdout; only its SHA-256 is stored, in api.tokensFile, which a running API re-reads within two seconds of a change.',
  options: {
    role: { type: 'string', value: 'admin|ops|auditor', help: 'the token’s role' },
    scope: { type: 'string', default: '330000', help: 'a region path the token is limited to' },
    'a-very-long-option-name-that-needs-its-own-line': { type: 'string', help: 'a long one' },
    verbose: { type: 'boolean', short: 'v', help: 'say more' },
  },
  positionals: true,
} satisfies CliCommand;

class Exited extends Error {
  constructor(readonly code: number | undefined) {
    super(`exit ${code}`);
  }
}
afterEach(() => vi.restoreAllMocks());
function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => out.push(String(s)) > 0);
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => err.push(String(s)) > 0);
  vi.spyOn(process, 'exit').mockImplementation((code) => {
    throw new Exited(code as number | undefined);
  });
  try {
    return { result: parseCli(CMD, args), out: out.join(''), err: err.join(''), code: undefined };
  } catch (e) {
    if (!(e instanceof Exited)) throw e;
    return { result: undefined, out: out.join(''), err: err.join(''), code: e.code };
  }
}

describe('the command-line parser', () => {
  it('parses options with their defaults and positionals', () => {
    const { result, code } = run(['add', 'ops1', '--role', 'ops', '-v']);
    expect(code).toBeUndefined();
    expect(result!.values).toMatchObject({ role: 'ops', scope: '330000', verbose: true });
    expect(result!.positionals).toEqual(['add', 'ops1']);
    expect(run(['list']).result!.values.verbose).toBe(false);
  });

  it('--help or -h anywhere before -- prints the usage and exits 0', () => {
    for (const args of [['--help'], ['add', '-h'], ['--role', 'x', '--help']]) {
      const r = run(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.out).toBe(helpText(CMD));
    }
    expect(wantsHelp(['--', '--help'])).toBe(false);
  });

  it('a wrong line is one line naming the problem and the usage, exit 2', () => {
    for (const [args, problem] of [
      [['--colour'], /unknown option '--colour'/],
      [['--role'], /option '--role <value>' argument missing/],
    ] as const) {
      const r = run([...args]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(problem);
      expect(r.err).toMatch(/^api tokens: .*; see `npm run api -- tokens --help`\n$/);
      expect(r.err.split('\n')).toHaveLength(2);
    }
  });

  it('a command without positionals refuses a stray argument', () => {
    const { positionals: _, ...strict } = CMD;
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    vi.spyOn(process, 'exit').mockImplementation((code) => {
      throw new Exited(code as number | undefined);
    });
    expect(() => parseCli(strict, ['stray'])).toThrow(Exited);
  });

  it('the usage lists the synopsis, wraps the text, and gives every option with its value and default', () => {
    const text = helpText(CMD);
    const lines = text.split('\n');
    expect(lines[0]).toBe(
      'usage: npm run api -- tokens add <name> --role admin|ops|auditor [--scope REGION/PATH]',
    );
    expect(lines[1]).toBe('       npm run api -- tokens list');
    expect(lines[2]).toBe('       npm run api -- tokens');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(110);
    expect(text).toMatch(/--role admin\|ops\|auditor +the token’s role\n/);
    expect(text).toMatch(/--scope VALUE +a region path the token is limited to \(default 330000\)/);
    expect(text).toMatch(/-v, --verbose +say more/);
    expect(text).toMatch(/ {4}--a-very-long-option-name-that-needs-its-own-line VALUE\n {10,}a long one/);
    expect(text).toMatch(/-h, --help +print this help and exit/);
  });
});
