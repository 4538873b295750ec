import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { CodedError } from '../contracts/errors.js';

/**
 * Configuration: one YAML file, then environment overrides, then validation with zod.
 *
 * Environment overrides: `CFM_INFLUX__URL=http://db:8086` sets `influx.url`. Levels are separated by `__`;
 * each level is upper snake case of the camelCase key (`CFM_INFLUX__BATCH_SIZE` → `influx.batchSize`).
 * The value is read as a YAML scalar, so numbers and booleans keep their type (`"5000"` → 5000); quote it
 * (`CFM_X__Y="'0123'"`) to force a string.
 *
 * A bad value stops start-up with a ConfigError that names the file (or variable), the key and the reason.
 */
export const ENV_PREFIX = 'CFM_';

export class ConfigError extends CodedError {
  constructor(
    readonly source: string,
    readonly key: string,
    readonly reason: string,
    code: 'CFM_CONFIG_INVALID' | 'CFM_CONFIG_UNREADABLE' = 'CFM_CONFIG_INVALID',
  ) {
    super(code, `${source}: ${key ? `${key}: ` : ''}${reason}`);
    this.name = 'ConfigError';
  }
}

export interface LoadOptions {
  /** YAML file; when absent, only defaults and environment apply. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  envPrefix?: string;
}

function snakeToCamel(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(
      file,
      '',
      `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      'CFM_CONFIG_UNREADABLE',
    );
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? `line ${e.linePos[0].line}` : '';
    throw new ConfigError(
      file,
      where,
      `not valid YAML: ${(e as Error).message.split('\n')[0]}`,
      'CFM_CONFIG_UNREADABLE',
    );
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(file, '', 'top level must be a mapping of sections', 'CFM_CONFIG_INVALID');
  }
  return doc as Record<string, unknown>;
}

/** Applies `CFM_A__B_C=value` overrides; returns which dotted keys came from which variable. */
function applyEnv(
  target: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  prefix: string,
): Map<string, string> {
  const origin = new Map<string, string>();
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(prefix) || raw === undefined) continue;
    const path = name.slice(prefix.length).split('__').filter(Boolean).map(snakeToCamel);
    if (path.length === 0) continue;
    let node = target;
    for (const seg of path.slice(0, -1)) {
      const next = node[seg];
      if (next === undefined || next === null || typeof next !== 'object' || Array.isArray(next))
        node[seg] = {};
      node = node[seg] as Record<string, unknown>;
    }
    let value: unknown;
    try {
      value = raw === '' ? '' : parseYaml(raw);
    } catch {
      value = raw;
    }
    // A bare word that YAML reads as null stays the literal string; an override never deletes a key.
    node[path.at(-1)!] = value ?? raw;
    origin.set(path.join('.'), name);
  }
  return origin;
}

/**
 * Loads, overrides and validates. The schema's defaults fill what is missing, so an empty file is a valid
 * development configuration.
 */
export function loadConfig<S extends z.ZodType>(schema: S, opts: LoadOptions = {}): z.output<S> {
  const source = opts.file ?? '(defaults)';
  const doc = opts.file ? readYaml(opts.file) : {};
  const origin = applyEnv(doc, opts.env ?? process.env, opts.envPrefix ?? ENV_PREFIX);
  const r = schema.safeParse(doc);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = issue.path.map(String).join('.');
  // Name the variable when the bad value came from the environment, the file otherwise.
  const fromEnv = [...origin.entries()].find(([k]) => key === k || key.startsWith(`${k}.`));
  const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more)` : '';
  const reason =
    issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.join(', ')}` : issue.message;
  throw new ConfigError(fromEnv ? `environment ${fromEnv[1]}` : source, key || '(root)', `${reason}${more}`);
}
