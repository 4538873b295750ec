import { parseArgs } from 'node:util';
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

/**
 * `node <service>/main.ts --config file.yaml [--print-config]`: loads and validates the config (a bad one
 * exits 2 with file, key and reason), builds the services and runs them until SIGTERM/SIGINT.
 */
export async function runMain<S extends z.ZodRawShape>(
  name: string,
  sections: S,
  build: (
    config: z.output<ReturnType<typeof processConfigSchema<S>>>,
    log: Logger,
  ) => Service[] | Promise<Service[]>,
  argv = process.argv.slice(2),
): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, 'print-config': { type: 'boolean', default: false } },
  });
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
  log.info({ config: shown }, 'starting');
  try {
    await runServices(await build(config, log), log);
  } catch {
    process.exit(1);
  }
}
