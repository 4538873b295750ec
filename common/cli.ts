import { type ParseArgsConfig, parseArgs } from 'node:util';
import { getHeapStatistics } from 'node:v8';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ConfigError, loadConfig } from './config.js';
import { runServices, type Service } from './lifecycle.js';
import { createLogger, logConfigSchema } from './log.js';
import { redactConfig, rememberSecrets, secretValues } from './redact.js';

/**
 * Every top-level section any of our processes reads. One YAML file may hold several (a server running broker
 * and collector shares one); each process validates its own sections strictly, ignores the others, and still
 * rejects an unknown top-level key (a typo like `colector:`).
 */
export const SECTION_NAMES = [
  'log',
  'influx',
  'broker',
  'collector',
  'agent',
  'poller',
  'api',
  'alerts',
  'rollup',
] as const;

export function processConfigSchema<S extends z.ZodRawShape>(sections: S) {
  const others = Object.fromEntries(SECTION_NAMES.map((n) => [n, z.unknown().optional()]));
  return z.strictObject({ ...others, log: logConfigSchema, ...sections });
}

/**
 * What a process reads of a loaded config: `log` and its own sections, with their schema. It prints and logs
 * only this — a neighbour's section in a shared file (and its secrets) is none of its business.
 */
export function ownConfig<S extends z.ZodRawShape>(
  sections: S,
  config: Record<string, unknown>,
): { schema: z.ZodType; config: Record<string, unknown> } {
  const shape = { log: logConfigSchema, ...sections };
  return {
    schema: z.strictObject(shape),
    config: Object.fromEntries(Object.keys(shape).map((k) => [k, config[k]])),
  };
}

/** Those sections for `--print-config` and the `starting` line, every secret redacted by its schema. */
export function shownConfig<S extends z.ZodRawShape>(
  sections: S,
  config: Record<string, unknown>,
): Record<string, unknown> {
  const own = ownConfig(sections, config);
  return redactConfig(own.schema, own.config);
}

/**
 * Registers every secret value of those sections to be scrubbed from the process's log lines and error
 * messages (a library quoting a URL, a server echoing a key): call once the config is loaded.
 */
export function rememberConfigSecrets<S extends z.ZodRawShape>(
  sections: S,
  config: Record<string, unknown>,
): void {
  const own = ownConfig(sections, config);
  rememberSecrets(secretValues(own.schema, own.config));
}

/** One option of a command line: parsed by `node:util` parseArgs, and listed in the command's `--help`. */
export interface CliOption {
  type: 'string' | 'boolean';
  short?: string;
  default?: string | boolean;
  /** The value's placeholder in the usage: `FILE`, `all|api|worker`. */
  value?: string;
  help: string;
}
export type CliOptions = Record<string, CliOption>;

/** A command (or subcommand): what `--help` prints and what its errors are prefixed with. */
export interface CliCommand<O extends CliOptions = CliOptions> {
  /** The prefix of its error lines: `api tokens`. */
  name: string;
  /** How it is typed, up to its own arguments: `npm run api -- tokens`. */
  command: string;
  /** Synopsis lines after `command`: `add <name> --role admin|ops|auditor [--scope REGION/PATH]`. */
  synopsis: readonly string[];
  /** What it does, in a few lines. */
  about: string;
  options: O;
  /** Whether it takes positional arguments (files, a subcommand's action and name). */
  positionals?: boolean;
}

export type CliValues<O extends CliOptions> = {
  [K in keyof O]: O[K]['type'] extends 'boolean'
    ? boolean
    : O[K]['default'] extends string
      ? string
      : string | undefined;
};

const HELP: CliOption = { type: 'boolean', short: 'h', help: 'print this help and exit' };

/** `text` in lines of at most `width` characters, every line after the first indented by `indent` more. */
function wrap(text: string, width: number, indent: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

/** The text `--help` prints: synopsis, what the command does, every option with its default. */
export function helpText(cmd: CliCommand): string {
  const opts = Object.entries({ ...cmd.options, help: HELP }).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    const dflt = o.type === 'string' && o.default !== undefined ? ` (default ${o.default})` : '';
    return [flag, `${o.help}${dflt}`] as const;
  });
  const width = Math.min(Math.max(...opts.map(([f]) => f.length)) + 4, 40);
  const option = ([flag, help]: readonly [string, string]) =>
    flag.length + 4 > width
      ? `  ${flag}\n${' '.repeat(width)}${wrap(help, 110 - width, width)}`
      : `  ${flag.padEnd(width - 2)}${wrap(help, 110 - width, width)}`;
  return [
    ...cmd.synopsis.map((s, i) => `${i === 0 ? 'usage: ' : '       '}${cmd.command}${s ? ` ${s}` : ''}`),
    '',
    wrap(cmd.about, 110, 0),
    '',
    'options:',
    ...opts.map(option),
    '',
  ].join('\n');
}

/** A wrong command line: one line naming the problem and where the usage is, exit 2 (no stack trace). */
export function usageError(cmd: Pick<CliCommand, 'name' | 'command'>, message: string): never {
  process.stderr.write(`${cmd.name}: ${message}; see \`${cmd.command} --help\`\n`);
  process.exit(2);
}

/**
 * A command that cannot do what it was asked (a bad config, a file it cannot use, a value out of range): one line
 * `<name>: <message>` on stderr, exit 2, no stack trace. A wrong command line is `usageError`.
 */
export function fail(name: string, message: string): never {
  process.stderr.write(`${name}: ${message}\n`);
  process.exit(2);
}

/** Whether the line asks for the usage: `--help` or `-h` anywhere before a `--`. */
export const wantsHelp = (args: readonly string[]): boolean => {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
};

/**
 * Parses a command line against `cmd.options`. `--help`/`-h` prints the usage on stdout and exits 0 (whatever
 * else is on the line); an unknown option, a missing value or a stray argument exits 2 with one line.
 */
export function parseCli<O extends CliOptions>(
  cmd: CliCommand<O>,
  args: readonly string[],
): { values: CliValues<O>; positionals: string[] } {
  if (wantsHelp(args)) {
    process.stdout.write(helpText(cmd));
    process.exit(0);
  }
  const options = Object.fromEntries(
    Object.entries(cmd.options).map(([name, o]) => [
      name,
      {
        type: o.type,
        ...(o.short ? { short: o.short } : {}),
        default: o.default ?? (o.type === 'boolean' ? false : undefined),
      },
    ]),
  ) as NonNullable<ParseArgsConfig['options']>;
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options,
      allowPositionals: cmd.positionals ?? false,
      strict: true,
    });
    return { values: values as CliValues<O>, positionals };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (!code?.startsWith('ERR_PARSE_ARGS_')) throw e;
    // Node's message is a sentence or two ("Unknown option '--x'. To specify a positional…"): the first will do.
    const first = (e as Error).message.split('. ')[0]!;
    usageError(cmd, first.charAt(0).toLowerCase() + first.slice(1));
  }
}

/** The options of every service process: `--config`, `--print-config`. */
export function serviceOptions(sections: readonly string[]) {
  return {
    config: {
      type: 'string',
      short: 'c',
      value: 'FILE',
      help: `the YAML config file: sections ${['log', ...sections].join(', ')} (others in the file are ignored); CFM_<SECTION>__<KEY> variables override it; reference: docs/config.md. Absent: the defaults and the variables`,
    },
    'print-config': {
      type: 'boolean',
      help: 'print the configuration this process would run with (its sections, defaults filled in, secrets redacted) and exit',
    },
  } satisfies CliOptions;
}

/**
 * `node <service>/main.ts --config file.yaml [--print-config]`: parses the command line (`--help` prints the
 * usage), loads and validates the config (a bad one exits 2 with file, key and reason), builds the services and
 * runs them until SIGTERM/SIGINT.
 */
export async function runMain<S extends z.ZodRawShape>(
  cmd: { name: string; command: string; about: string },
  sections: S,
  build: (
    config: z.output<ReturnType<typeof processConfigSchema<S>>>,
    log: Logger,
  ) => Service[] | Promise<Service[]>,
  argv = process.argv.slice(2),
): Promise<void> {
  const options = serviceOptions(Object.keys(sections));
  const { values } = parseCli({ ...cmd, synopsis: ['[--config FILE] [--print-config]'], options }, argv);
  await runService(cmd.name, sections, build, values);
}

/** The service part of `runMain`, for a command that parsed its own line (`api run --role …`). */
export async function runService<S extends z.ZodRawShape>(
  name: string,
  sections: S,
  build: (
    config: z.output<ReturnType<typeof processConfigSchema<S>>>,
    log: Logger,
  ) => Service[] | Promise<Service[]>,
  values: { config?: string | undefined; 'print-config': boolean },
): Promise<void> {
  let config: z.output<ReturnType<typeof processConfigSchema<S>>>;
  try {
    config = loadConfig(processConfigSchema(sections), { file: values.config });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  rememberConfigSecrets(sections, config as Record<string, unknown>);
  const shown = shownConfig(sections, config as Record<string, unknown>);
  if (values['print-config']) {
    process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
    return;
  }
  const log = createLogger(name, (config as { log: z.output<typeof logConfigSchema> }).log);
  // The heap limit in force (node flags, NODE_OPTIONS, a service's memory cap): what a leak runs into.
  log.info(
    { config: shown, heapLimitMb: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20) },
    'starting',
  );
  try {
    await runServices(await build(config, log), log);
  } catch {
    process.exit(1);
  }
}
