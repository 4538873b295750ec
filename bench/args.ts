import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { fail } from '../common/cli.js';
import { removeAtExit } from '../dev/children.js';

// Ctrl-C or a SIGTERM (`timeout`) ends a benchmark through process.exit, so its `exit` hooks run: the daemons it
// started are killed and the temporary folders removed (dev/children.ts). Node's default for these signals ends
// the process without them.
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const)
  process.once(signal, () => process.exit(code));

/** A temporary folder of the benchmark's, removed when the process exits however it ends. */
export function benchTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  removeAtExit(dir);
  return dir;
}

/**
 * A benchmark's command line (`npm run bench:x -- --flag value`): node's parseArgs, strict, with what it refuses
 * — an unknown option, a missing value — said in one line and exit 2, not a stack trace.
 */
export function benchArgs<T extends ParseArgsConfig>(
  bench: string,
  config: T,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    if (!(e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS_')) throw e;
    return fail(bench, (e as Error).message.split(/\.\s|\n/)[0]!);
  }
}

/** A count, size or duration given on the command line: a finite number ≥ `min`, or one line and exit 2. */
export function numberArg(bench: string, flag: string, value: string | number | undefined, min = 1): number {
  const n =
    typeof value === 'number'
      ? value
      : value === undefined || value.trim() === ''
        ? Number.NaN
        : Number(value);
  if (!Number.isFinite(n) || n < min)
    fail(bench, `--${flag} ${value ?? '(none)'}: expected a number ≥ ${min}`);
  return n;
}
