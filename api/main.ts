// The API process and its tools (the composition root of the API process family: api/compose.ts).
//   npm run api -- run [--role all|api|worker] --config config.yaml
//       all (default): API + alerting + rollups in one process; api: a stateless API instance of a scaled
//       deployment; worker: its one alerting and rollup process (docs/deploy-scale-out.md)
//   npm run api -- tokens add <name> --role admin|ops|auditor [--scope 330000/330100/330106] [--config f]
//   npm run api -- tokens list | tokens revoke <id>
//   npm run api -- import <file> [--replace devices,…] [--config f]    (the same all-or-nothing import as the API)
//   npm run api -- rollup --from 2026-09-01 --to 2026-09-30 [--config f]    (backfill rollups)
// A new token is printed once, on stdout; only its SHA-256 is stored.
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { processConfigSchema, rememberConfigSecrets, runMain } from '../common/cli.js';
import { ConfigError, loadConfig } from '../common/config.js';
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
import { importLimits, loadCalendars } from './server.js';
import { ROLES, type Role, TokenStore, TokensFileError } from './tokens.js';

const [command, ...rest] = process.argv.slice(2);
const sections = API_SECTIONS;

function fail(message: string): never {
  process.stderr.write(`api: ${message}\n`);
  process.exit(2);
}

/** Every option of every subcommand (all strings); each subcommand reads its own. */
function options(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      role: { type: 'string' },
      scope: { type: 'string' },
      replace: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
    },
  });
}
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
function registryStore(path: string, limits?: ReturnType<typeof importLimits>): RegistryStore {
  try {
    return new RegistryStore(path, limits).load();
  } catch (e) {
    if (e instanceof RegistryFileError) fail(e.message);
    throw e;
  }
}

async function tokens(args: string[]): Promise<void> {
  const { values, positionals } = options(args);
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
      if (!arg) fail('tokens add <name> --role admin|ops|auditor [--scope REGION/PATH]');
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
      if (!arg) fail('tokens revoke <id>');
      if (!store.revoke(arg)) fail(`no token ${arg}`);
      // TokenStore.verify re-reads the file when it changed, looking at most every checkEveryMs.
      process.stderr.write(
        `revoked ${arg} in ${store.path}; an API reading this file refuses it within ${store.checkEveryMs / 1000} s, no restart needed\n`,
      );
      return;
    default:
      fail('tokens add|list|revoke');
  }
}

async function importFiles(args: string[]): Promise<void> {
  const { values, positionals } = options(args);
  if (positionals.length === 0) fail('import <file> [<file> …] [--replace devices,…]');
  const replace = (values.replace?.split(',') ?? []) as EntityName[];
  for (const r of replace)
    if (!(ENTITIES as readonly string[]).includes(r)) fail(`--replace: unknown list ${r}`);
  const api = config(values.config).api;
  const limits = importLimits(api);
  const store = registryStore(api.registryFile, limits);
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
    throw e;
  }
}

async function rollup(args: string[]): Promise<void> {
  const { values } = options(args);
  const from = values.from;
  const to = values.to ?? from;
  if (!from || !/^\d{4}-\d{2}-\d{2}$/.test(from) || !to || !/^\d{4}-\d{2}-\d{2}$/.test(to))
    fail('rollup --from YYYY-MM-DD [--to YYYY-MM-DD]');
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
  // --role is this composition root's own flag; the rest is every process's (--config, --print-config).
  let role: string = 'all';
  const args: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--role') role = rest[++i] ?? '';
    else if (a.startsWith('--role=')) role = a.slice('--role='.length);
    else args.push(a);
  }
  if (!(PROCESS_ROLES as readonly string[]).includes(role))
    fail(`--role must be one of ${PROCESS_ROLES.join(', ')} (default all)`);
  await runMain(
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
    args,
  );
} else
  fail(
    'usage: api run [--role all|api|worker] [--config f] | api tokens add|list|revoke … | api import <file> | api rollup --from D --to D',
  );
