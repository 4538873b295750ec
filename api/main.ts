// The API process and its tools (the composition root of the API process family: api/compose.ts):
// `npm run api -- run|tokens|import|rollup …`; each command's usage is its CliCommand below (`--help`).
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import {
  type CliCommand,
  type CliOptions,
  fail as failWith,
  helpText,
  parseCli,
  processConfigSchema,
  rememberConfigSecrets,
  runService,
  serviceOptions,
  usageError,
  wantsHelp,
} from '../common/cli.js';
import { ConfigError, loadConfig } from '../common/config.js';
import { CredentialsFileError } from '../common/credentials-file.js';
import { createLogger } from '../common/log.js';
import { ImportError } from '../common/registry/import.js';
import { ImportLimitError } from '../common/registry/limits.js';
import { RegistryFileError, RegistryStore } from '../common/registry/store.js';
import { Storage } from '../common/storage/storage.js';
import { regionPathSchema } from '../contracts/ids.js';
import { ENTITIES, type EntityName } from '../contracts/registry.js';
import { Rollup } from '../rollup/rollup.js';
import {
  API_SECTIONS,
  composeApiProcess,
  PROCESS_ROLES,
  type ProcessRole,
  rollupConfigOf,
} from './compose.js';
import { credentialNamesReader, importLimits, loadCalendars } from './server.js';
import { ROLES, type Role, TokenStore, TokensFileError } from './tokens.js';

const [command, ...rest] = process.argv.slice(2);
const sections = API_SECTIONS;
/** `--config` of the tools (`run` also has `--print-config`). */
const CONFIG_OPTION = { config: serviceOptions(Object.keys(sections)).config } satisfies CliOptions;

const API: CliCommand = {
  name: 'api',
  command: 'npm run api --',
  synopsis: [
    'run [--role all|api|worker] [--config FILE] [--print-config]',
    'tokens add <name> --role admin|ops|auditor [--scope REGION/PATH] [--config FILE]',
    'tokens list | tokens revoke <id> [--config FILE]',
    'import <file> [<file> …] [--replace devices,…] [--config FILE]',
    'rollup --from YYYY-MM-DD [--to YYYY-MM-DD] [--config FILE]',
  ],
  about:
    'The API process and its tools; `npm run api -- <command> --help` describes each command. Without --config every file is at its default path (var/registry.json, var/api-tokens.json, var/alerts-state.json), where `npm run stack` keeps its own: these commands work on a running quickstart as they are.',
  options: {},
};
const RUN = {
  name: 'api run',
  command: 'npm run api -- run',
  synopsis: ['[--role all|api|worker] [--config FILE] [--print-config]'],
  about:
    'Runs the API. --role all (the default): the API with alerting and the daily rollups in one process; api: a stateless API instance of a scaled deployment; worker: its one alerting and rollup process (docs/deploy-scale-out.md).',
  options: {
    role: {
      type: 'string',
      value: PROCESS_ROLES.join('|'),
      default: 'all',
      help: 'what this process runs',
    },
    ...serviceOptions(Object.keys(sections)),
  },
} satisfies CliCommand;
const TOKENS = {
  name: 'api tokens',
  command: 'npm run api -- tokens',
  synopsis: [
    'add <name> --role admin|ops|auditor [--scope REGION/PATH] [--config FILE]',
    'list [--config FILE]',
    'revoke <id> [--config FILE]',
  ],
  about:
    'Manages the API tokens in api.tokensFile (default var/api-tokens.json, also that of the quickstart). `add` prints the new token once, on stdout; only its SHA-256 is stored. A running API reading the same file accepts or refuses the change within seconds, without a restart.',
  options: {
    role: { type: 'string', value: ROLES.join('|'), help: 'add: what the token may do' },
    scope: {
      type: 'string',
      value: 'REGION/PATH',
      help: 'add: the region the token sees, as a path such as 330000/330100/330106 (absent: everything)',
    },
    ...CONFIG_OPTION,
  },
  positionals: true,
} satisfies CliCommand;
const IMPORT = {
  name: 'api import',
  command: 'npm run api -- import',
  synopsis: ['<file> [<file> …] [--replace devices,…] [--config FILE]'],
  about:
    'Imports registry files (XLSX, CSV, YAML) into api.registryFile (default var/registry.json, also that of the quickstart), all-or-nothing, with the same checks and limits as POST /v1/registry/import; a running API and collector reading the same file pick it up within seconds.',
  options: {
    replace: {
      type: 'string',
      value: ENTITIES.join(','),
      help: 'lists the files replace whole instead of updating row by row',
    },
    ...CONFIG_OPTION,
  },
  positionals: true,
} satisfies CliCommand;
const ROLLUP = {
  name: 'api rollup',
  command: 'npm run api -- rollup',
  synopsis: ['--from YYYY-MM-DD [--to YYYY-MM-DD] [--config FILE]'],
  about:
    'Computes the daily rollups for a range of days (a backfill; a running API rolls up by itself), from the data in InfluxDB, the registry and the calendars of the config.',
  options: {
    from: { type: 'string', value: 'YYYY-MM-DD', help: 'the first day' },
    to: { type: 'string', value: 'YYYY-MM-DD', help: 'the last day (default: --from)' },
    ...CONFIG_OPTION,
  },
} satisfies CliCommand;

const fail: (message: string) => never = (message) => failWith('api', message);

/** The config (a bad one: one line naming the file, key and reason, exit 2, as `run` does). */
function config(file: string | undefined) {
  let c: ReturnType<typeof readConfig>;
  try {
    c = readConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) fail(`configuration error: ${e.message}`);
    throw e;
  }
  // `rollup` talks to InfluxDB: its errors must not carry influx.* secrets either.
  rememberConfigSecrets(sections, c);
  return c;
}
const readConfig = (file: string | undefined) => loadConfig(processConfigSchema(sections), { file });

/** The registry file as the command finds it (a damaged one: one line naming the file and the field, exit 2). */
function registryStore(
  path: string,
  limits?: ReturnType<typeof importLimits>,
  credentialNames?: () => readonly string[],
): RegistryStore {
  try {
    return new RegistryStore(path, limits, credentialNames).load();
  } catch (e) {
    if (e instanceof RegistryFileError) fail(e.message);
    throw e;
  }
}

async function tokens(args: string[]): Promise<void> {
  const { values, positionals } = parseCli(TOKENS, args);
  let store: TokenStore;
  try {
    store = new TokenStore(config(values.config).api.tokensFile).load();
  } catch (e) {
    // A damaged file: one line naming the file and the field, and nothing is changed.
    if (e instanceof TokensFileError) fail(e.message);
    throw e;
  }
  const [action, arg] = positionals;
  switch (action) {
    case 'add': {
      if (!arg) usageError(TOKENS, 'add needs the name of the token');
      const role = values.role;
      if (!role || !(ROLES as readonly string[]).includes(role))
        fail(`--role must be one of ${ROLES.join(', ')}`);
      const scope = values.scope;
      if (scope !== undefined && !regionPathSchema.safeParse(scope).success)
        fail('--scope must be a region path such as 330000/330100/330106');
      const { id, token } = store.add(arg, role as Role, scope);
      process.stdout.write(`${token}\n`);
      process.stderr.write(
        `added token ${id} (${arg}, ${role}${scope ? `, scope ${scope}` : ''}) to ${store.path}; an API reading this file accepts it within ${store.checkEveryMs / 1000} s\n`,
      );
      return;
    }
    case 'list':
      for (const t of store.list())
        process.stdout.write(`${t.id}\t${t.role}\t${t.scope ?? '*'}\t${t.name}\t${t.createdAt}\n`);
      return;
    case 'revoke':
      if (!arg) usageError(TOKENS, 'revoke needs the id of the token (`tokens list`)');
      if (!store.revoke(arg)) fail(`no token ${arg}`);
      // TokenStore.verify re-reads the file when it changed, looking at most every checkEveryMs.
      process.stderr.write(
        `revoked ${arg} in ${store.path}; an API reading this file refuses it within ${store.checkEveryMs / 1000} s, no restart needed\n`,
      );
      return;
    default:
      usageError(TOKENS, action ? `unknown action ${action}` : 'add, list or revoke?');
  }
}

async function importFiles(args: string[]): Promise<void> {
  const { values, positionals } = parseCli(IMPORT, args);
  if (positionals.length === 0) usageError(IMPORT, 'no file to import');
  const replace = (values.replace?.split(',') ?? []) as EntityName[];
  for (const r of replace)
    if (!(ENTITIES as readonly string[]).includes(r)) fail(`--replace: unknown list ${r}`);
  const api = config(values.config).api;
  const limits = importLimits(api);
  const store = registryStore(api.registryFile, limits, credentialNamesReader(api));
  try {
    // The same limits as the API's, the file size checked before the file is read.
    const files = positionals.map((f) => {
      const size = statSync(f).size;
      if (size > limits.maxFileBytes)
        throw new ImportLimitError(
          'maxFileBytes',
          limits.maxFileBytes,
          `${basename(f)}: the file is ${size} bytes, more than ${limits.maxFileBytes}`,
        );
      return { name: basename(f), data: readFileSync(f) };
    });
    const rows = await store.import(files, { replace });
    process.stderr.write(`imported ${JSON.stringify(rows)} into ${store.path}\n`);
  } catch (e) {
    if (e instanceof ImportError) fail(e.message);
    if (e instanceof ImportLimitError) fail(`import refused, nothing changed: ${e.message}`);
    if (e instanceof CredentialsFileError) fail(`import refused, nothing changed: ${e.message}`);
    throw e;
  }
}

async function rollup(args: string[]): Promise<void> {
  const { values } = parseCli(ROLLUP, args);
  const from = values.from;
  const to = values.to ?? from;
  if (!from || !/^\d{4}-\d{2}-\d{2}$/.test(from) || !to || !/^\d{4}-\d{2}-\d{2}$/.test(to))
    usageError(ROLLUP, '--from and --to must be dates YYYY-MM-DD');
  const c = config(values.config);
  const log = createLogger('api-rollup', c.log);
  const storage = new Storage(c.influx, { log });
  await storage.start();
  try {
    const registry = registryStore(c.api.registryFile);
    const calendars = loadCalendars(c.api.calendarFile);
    const r = new Rollup({
      storage,
      registry: () => registry.index,
      calendars: () => calendars,
      log,
      bucketS: rollupConfigOf(c, log).bucketS,
      readsInFlight: rollupConfigOf(c, log).readsInFlight,
    });
    await r.range(from, to);
  } finally {
    await storage.stop();
  }
}

if (command === 'tokens') await tokens(rest);
else if (command === 'import') await importFiles(rest);
else if (command === 'rollup') await rollup(rest);
else if (command === 'run') {
  const { values } = parseCli(RUN, rest);
  const role = values.role;
  if (!(PROCESS_ROLES as readonly string[]).includes(role))
    fail(`--role must be one of ${PROCESS_ROLES.join(', ')} (default all)`);
  await runService(
    role === 'all' ? 'api' : `api-${role}`,
    sections,
    (c, log) => {
      try {
        return composeApiProcess(role as ProcessRole, c, log).services;
      } catch (e) {
        // What the schemas cannot check (a default profile that no profile defines): still exit 2.
        fail(`configuration error: ${(e as Error).message}`);
      }
    },
    values,
  );
} else if (command === undefined) {
  process.stderr.write(helpText(API));
  process.exit(2);
} else if (wantsHelp([command, ...rest])) process.stdout.write(helpText(API));
else usageError(API, `unknown command ${command}`);
