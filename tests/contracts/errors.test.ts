import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { processConfigSchema } from '../../common/cli.js';
import { loadConfig } from '../../common/config.js';
import type { ApiError, sendError } from '../../common/http/errors.js';
import type { Role } from '../../common/http/principal.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { DEFAULT_IMPORT_LIMITS } from '../../common/registry/limits.js';
import { RegistryStore } from '../../common/registry/store.js';
import { influxConfigSchema } from '../../common/storage/config.js';
import type { Storage } from '../../common/storage/storage.js';
import { type CodedError, ERROR_CODES, type ErrorCode, RETIRED_ERROR_CODES } from '../../contracts/errors.js';
import { testApp } from '../helpers/api.js';
import { freePort, Influxd, testStorage } from '../helpers/influx.js';
import { devicesCsv } from '../helpers/xlsx.js';

/**
 * The error-code catalogue against its uses and its documentation, in the manner of fastify's errors test
 * (test/internals/errors.test.js): every code is raised — each is provoked here through the public behaviour
 * that raises it (a function's error, an API answer), and RAISES must have an entry for every code, or this
 * file does not compile — every code is documented, and no document names a code that is not in the
 * catalogue. A code nobody raises is a promise nobody keeps.
 */
const repo = new URL('../..', import.meta.url).pathname;
/** Every file below `dir` (relative to the repository), skipping dependencies, output and run-time data. */
const walk = (dir: string): string[] =>
  readdirSync(join(repo, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory())
      return ['node_modules', 'dist', 'var', '.git'].includes(e.name) || e.name.startsWith('.')
        ? []
        : walk(path);
    return [path];
  });
const docs = walk('.')
  .map((f) => relative('.', f))
  .filter((f) => f.endsWith('.md'))
  .map((f) => ({ file: f, text: readFileSync(join(repo, f), 'utf8') }));
const catalogue = readFileSync(join(repo, 'docs/errors.md'), 'utf8');

const active = Object.keys(ERROR_CODES);
const retired = Object.keys(RETIRED_ERROR_CODES);
/** `CFM_API`, `CFM_STORAGE`, …: a word of one of these families is an error code wherever it is written. */
const families = [...new Set([...active, ...retired].map((c) => c.split('_').slice(0, 2).join('_')))];
const codeLike = new RegExp(`\\b(?:${families.join('|')})_[A-Z0-9]+(?:_[A-Z0-9]+)*\\b(?!_)`, 'g');

/** The codes of the table rows of one `## heading` section of docs/errors.md. */
function rows(heading: string): string[] {
  const section = catalogue.split(/^## /m).find((s) => s.startsWith(heading));
  return [...(section ?? '').matchAll(/^\| `(CFM_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]!);
}

describe('error codes', () => {
  it('sees the documents', () => {
    expect(docs.map((d) => d.file)).toEqual(
      expect.arrayContaining(['README.md', 'api/README.md', 'docs/errors.md']),
    );
  });

  it('every code in the catalogue is documented in docs/errors.md, once', () => {
    const documented = catalogue.split(/^## /m).flatMap((s) => (s.startsWith('Retired') ? [] : rows(s)));
    expect([...documented].sort()).toEqual([...active].sort());
  });

  it('no document names a code the catalogue does not have', () => {
    const unknown = docs.flatMap((d) =>
      [...d.text.matchAll(codeLike)]
        .map((m) => m[0])
        .filter((c) => !active.includes(c) && !retired.includes(c))
        .map((c) => `${d.file}: ${c}`),
    );
    expect(unknown).toEqual([]);
    // The check itself finds codes where they are written.
    expect('`CFM_API_NOT_FOUND`, CFM_API__MQTT__URL'.match(codeLike)).toEqual(['CFM_API_NOT_FOUND']);
  });

  it('retired codes are never reused: not active, documented as retired, and no error can carry one', () => {
    expect(active.filter((c) => retired.includes(c))).toEqual([]);
    expect([...rows('Retired')].sort()).toEqual([...retired].sort());
    // Every way to raise a code takes an active one (checked when this file compiles).
    expectTypeOf<ConstructorParameters<typeof CodedError>[0]>().toEqualTypeOf<ErrorCode>();
    expectTypeOf<ConstructorParameters<typeof ApiError>[1]>().toEqualTypeOf<ErrorCode>();
    expectTypeOf<Parameters<typeof sendError>[2]>().toEqualTypeOf<ErrorCode>();
    expectTypeOf<Extract<keyof typeof RETIRED_ERROR_CODES, ErrorCode>>().toBeNever();
  });
});

// ---- every code is raised ------------------------------------------------------------------------------------

const influxd = new Influxd({ authEnabled: true });
const ADMIN = { username: 'admin', password: 'adm1n-pw' };
const SCOPE = '330000/330100/330106';
let dir: string;
let closedPort: number;
let storage: Storage;
let registry: RegistryStore;
let tokens: TokenStore;
let app: Awaited<ReturnType<typeof testApp>>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-errors-'));
  closedPort = await freePort();
  await influxd.start();
  // The first admin user may be created without credentials.
  await influxd.query(`CREATE USER admin WITH PASSWORD '${ADMIN.password}' WITH ALL PRIVILEGES`);
  storage = testStorage(influxd.url, { database: 'errors', ...ADMIN }).storage;
  await storage.start();
  registry = new RegistryStore(join(dir, 'registry.json'), {
    ...DEFAULT_IMPORT_LIMITS,
    maxFileBytes: 4_096,
    maxRows: 1,
  }).load();
  tokens = new TokenStore(join(dir, 'tokens.json')).load();
  // The API's storage is one nobody answers for: what a report asks of it fails.
  app = await testApp({
    registry,
    calendars: new Calendars([]),
    tokens,
    storage: testStorage(`http://127.0.0.1:${closedPort}`, { timeoutMs: 2_000 }).storage,
    live: new LiveState(undefined, silentLogger()),
    rateLimitMax: 2,
    authFailures: 1,
  });
});
afterAll(async () => {
  await app?.close();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** The error `f` throws or rejects with. */
async function thrown(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('nothing was thrown');
}

/**
 * One API request with a token of its own (each its own rate-limit budget) of `role`, unscoped unless `scope`
 * is given; `from` is the client address. Returns the answer's body.
 */
async function request(
  method: 'GET' | 'POST',
  url: string,
  opts: { role?: Role; scope?: string; payload?: string | Buffer; from?: string; times?: number } = {},
): Promise<unknown> {
  const token = opts.role ? tokens.add(`${method} ${url}`, opts.role, opts.scope).token : undefined;
  let r: Awaited<ReturnType<typeof app.inject>> | undefined;
  for (let i = 0; i < (opts.times ?? 1); i++)
    r = await app.inject({
      method,
      url,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(opts.payload !== undefined ? { 'content-type': 'application/octet-stream' } : {}),
      },
      ...(opts.payload !== undefined ? { payload: opts.payload } : {}),
      remoteAddress: opts.from ?? '127.0.0.1',
    });
  return r!.json();
}

/** A configuration file with `text`. */
function configFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}
const loadInflux = (file: string) =>
  loadConfig(processConfigSchema({ influx: influxConfigSchema }), { file, env: {} });

const IMPORT = '/v1/registry/import';
const validRegistry = Buffer.from(JSON.stringify({ regions: [], schools: [], classrooms: [], devices: [] }));

/** How each code is raised, through what the code promises; resolves to the error or the API's answer. */
const RAISES: Record<ErrorCode, () => Promise<unknown>> = {
  CFM_CONFIG_INVALID: () => thrown(() => loadInflux(configFile('invalid.yaml', 'influx: { url: 42 }\n'))),
  CFM_CONFIG_UNREADABLE: () => thrown(() => loadInflux(join(dir, 'missing.yaml'))),
  CFM_STORAGE_UNREACHABLE: () =>
    thrown(() => testStorage(`http://127.0.0.1:${closedPort}`, { timeoutMs: 2_000 }).storage.start()),
  CFM_STORAGE_AUTH: () =>
    thrown(() => testStorage(influxd.url, { username: 'admin', password: 'wrong' }).storage.start()),
  CFM_STORAGE_NO_DATABASE: () =>
    thrown(() =>
      testStorage(influxd.url, { database: 'absent', createDatabase: false, ...ADMIN }).storage.start(),
    ),
  CFM_STORAGE_QUERY: () => thrown(() => storage.query('SELEC nonsense')),
  CFM_API_BAD_REQUEST: () => request('GET', '/v1/devices?kind=toaster', { role: 'admin' }),
  CFM_API_UNAUTHENTICATED: () => request('GET', '/v1/schools', { from: '127.0.0.2' }),
  CFM_API_FORBIDDEN: () =>
    request('POST', `${IMPORT}?filename=r.json`, { role: 'auditor', payload: validRegistry }),
  CFM_API_OUT_OF_SCOPE: () => request('GET', '/v1/registry/export', { role: 'admin', scope: SCOPE }),
  CFM_API_NOT_FOUND: () => request('GET', '/v1/nothing-here', { role: 'admin' }),
  // rateLimitMax 2: the third request of one token.
  CFM_API_RATE_LIMITED: () => request('GET', '/v1/profiles', { role: 'ops', times: 3 }),
  // authFailures 1: the second failure from one address.
  CFM_API_AUTH_LIMITED: () => request('GET', '/v1/schools', { from: '127.0.0.3', times: 2 }),
  CFM_API_IMPORT_REJECTED: () =>
    request('POST', `${IMPORT}?filename=r.json`, {
      role: 'admin',
      payload: JSON.stringify({ devices: [{ id: 'pn-1', school: 'nowhere', kind: 'panel' }] }),
    }),
  // maxFileBytes 4 KiB: the import route's body limit.
  CFM_API_TOO_LARGE: () =>
    request('POST', `${IMPORT}?filename=r.json`, { role: 'admin', payload: Buffer.alloc(8_192, 0x20) }),
  // maxRows 1.
  CFM_API_IMPORT_LIMIT: () =>
    request('POST', `${IMPORT}?filename=devices.csv`, { role: 'admin', payload: devicesCsv(2, 'A') }),
  // A warm import worker can finish this small import within a few milliseconds — before a poll for `busy`
  // came round on a loaded machine (a CI run waited 15 s for it). So the request goes in as the import starts,
  // and the pair is tried again until they overlap (each import writes the same registry).
  CFM_API_IMPORT_BUSY: async () => {
    for (let attempt = 1; ; attempt++) {
      const running = registry.import([{ name: 'r.json', data: validRegistry }]);
      try {
        const r = await request('POST', `${IMPORT}?filename=r.json`, {
          role: 'admin',
          payload: validRegistry,
        });
        if ((r as { code?: string }).code === 'CFM_API_IMPORT_BUSY' || attempt === 20) return r;
      } finally {
        await running;
      }
    }
  },
  CFM_API_UNAVAILABLE: () =>
    request('GET', '/v1/attainment?period=2026-10-05..2026-10-11', { role: 'admin' }),
  // A folder where the registry file should be: nothing a request can cause or mend.
  CFM_API_INTERNAL: async () => {
    const aside = `${registry.path}.aside`;
    rmSync(aside, { force: true });
    if (existsSync(registry.path)) renameSync(registry.path, aside);
    mkdirSync(registry.path);
    try {
      return await request('POST', `${IMPORT}?filename=r.json`, { role: 'admin', payload: validRegistry });
    } finally {
      rmSync(registry.path, { recursive: true });
      if (existsSync(aside)) renameSync(aside, registry.path);
    }
  },
};

describe('every code in the catalogue is raised', () => {
  it.each(Object.keys(RAISES) as ErrorCode[])('%s', async (code) => {
    expect(await RAISES[code]()).toMatchObject({ code });
  });
});
