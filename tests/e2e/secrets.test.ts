import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ExcelJS from 'exceljs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { z } from 'zod';
import { configFields, mapSecrets } from '../../common/redact.js';
import { CHILD_PID_DIR_ENV } from '../../dev/children.js';
import { ALL_SECTIONS } from '../../scripts/gen-docs.js';
import { freePort, Influxd, waitFor } from '../helpers/influx.js';
import { UPLINK_REGIONS, uplinkSchool } from '../helpers/uplinks.js';

/**
 * No secret in any output (issue #13). Every field the config schemas mark secret is filled with its own
 * sentinel — a password becomes `zzsentinel7v`, a URL gets `zzsentinel3user:zzsentinel3pass@`, a sentinel in each
 * query value and, where the path is secret, in the path — and each program is run as the README runs it, as a
 * real child process: `--print-config`, then a start-up that meets a connection error (InfluxDB, MQTT, SNMP,
 * PJLink, every alert channel on closed loopback ports). Everything it writes to stdout and stderr, what its
 * HTTP endpoints answer and the files it writes must be free of every sentinel.
 *
 * The pollers' SNMP credentials live in their own file (`poller.credentialsFile`, #17), not in the config: it is
 * filled with sentinels too (a community, v3 keys), the registry names them (imported against the names-only
 * copy `npm run poller -- credential-names` writes), and the poller polls them — its output, the copy, the
 * import's, the API's and the registry export must hold none of them, nor the errors of a broken credentials file.
 */
const repo = fileURLToPath(new URL('../../', import.meta.url));
const SENTINEL = 'zzsentinel';
const ALL = z.strictObject(ALL_SECTIONS);

/** Each program, as the README starts it, and the sections it reads. */
const PROGRAMS = {
  broker: { entry: 'broker/main.ts', args: ['run'], sections: ['broker'] },
  collector: { entry: 'collector/main.ts', args: [], sections: ['influx', 'collector'] },
  api: { entry: 'api/main.ts', args: ['run'], sections: ['influx', 'api', 'alerts', 'rollup'] },
  agent: { entry: 'agents/classroom/main.ts', args: [], sections: ['agent'] },
  poller: { entry: 'agents/snmp/main.ts', args: [], sections: ['poller'] },
  // The stack prints what it runs with: every service's section (from the file: `log` and `influx`).
  stack: {
    entry: 'scripts/stack.ts',
    args: [],
    sections: ['influx', 'broker', 'collector', 'poller', 'agent', 'api', 'alerts', 'rollup'],
  },
} as const;
type Program = keyof typeof PROGRAMS;

const dir = mkdtempSync(join(tmpdir(), 'cfm-secrets-'));
const children = new Set<ChildProcess>();
const influxd = new Influxd();
const env: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  ...(process.env[CHILD_PID_DIR_ENV] ? { [CHILD_PID_DIR_ENV]: process.env[CHILD_PID_DIR_ENV] } : {}),
};
const ports = { closed: 0, closedUdp: 0, metrics: 0, api: 0 };
/** The shared file with every secret filled, InfluxDB unreachable at a URL with credentials. */
let unreachable = '';
/** The same, with InfluxDB up (a URL with credentials never reaches it: fetch refuses one). */
let reachable = '';
const visited = new Set<string>();
/** The pollers' credentials file: its secrets are sentinels as well (not config fields: the walk does not see them). */
const pollerCredentials = () => join(dir, 'config-poller-credentials.yaml');
const POLLER_SECRETS = {
  community: `${SENTINEL}community`,
  authKey: `${SENTINEL}authkey`,
  privKey: `${SENTINEL}privkey`,
};
const credentialNames = () => join(dir, 'credential-names.yaml');

/** Every secret field filled with its own sentinel, valid for the field's type. */
function fillSecrets(doc: unknown): Record<string, unknown> {
  let n = 0;
  return mapSecrets(ALL, doc, (value, found, path) => {
    if (found === 'opaque') return value;
    visited.add(path);
    const id = `${SENTINEL}${++n}`;
    if (found === 'value') return `${id}v`;
    const u = new URL(String(value));
    u.username = `${id}user`;
    u.password = `${id}pass`;
    for (const k of [...u.searchParams.keys()]) u.searchParams.set(k, `${id}${k}`);
    u.searchParams.append('token', `${id}query`);
    if (found === 'url-path') u.pathname = u.pathname.replace(/[^/]*$/, `${id}path`);
    return u.href;
  }) as Record<string, unknown>;
}

/** A config that holds every secret-bearing field, each with a placeholder the walk replaces. */
function baseConfig(influxUrl: string): Record<string, unknown> {
  const closed = `127.0.0.1:${ports.closed}`;
  const mqtt = (username: string) => ({
    url: `mqtt://${closed}`,
    username,
    password: 'placeholder',
    connectTimeoutMs: 1_000,
    reconnectMinMs: 200,
    reconnectMaxMs: 1_000,
  });
  return {
    log: { level: 'debug' }, // the most output there is
    influx: {
      url: influxUrl,
      database: 'secrets',
      token: 'placeholder',
      username: 'cfm',
      password: 'placeholder',
      timeoutMs: 2_000,
    },
    broker: {
      listeners: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }],
      credentialsFile: join(dir, 'broker-credentials.yaml'),
    },
    collector: {
      mqtt: mqtt('collector'),
      registryFile: join(dir, 'registry.json'),
      metrics: { host: '127.0.0.1', port: ports.metrics },
    },
    agent: {
      school: 's1',
      device: 'pc-1',
      intervalS: 60,
      mqtt: mqtt('pc-1'),
      spool: { dir: join(dir, 'agent-spool') },
      display: {
        source: 'pjlink',
        host: '127.0.0.1',
        port: ports.closed,
        password: 'placeholder',
        timeoutMs: 500,
      },
    },
    poller: {
      mqtt: mqtt('poller'),
      spool: { dir: join(dir, 'poller-spool') },
      targets: [
        {
          device: 'gw-1',
          school: 's1',
          address: '127.0.0.1',
          port: ports.closedUdp,
          community: 'placeholder',
        },
        {
          device: 'gw-2',
          school: 's1',
          address: '127.0.0.1',
          port: ports.closedUdp,
          version: '3',
          v3: { user: 'poller', authKey: 'placeholder', privKey: 'placeholder' },
        },
      ].map((t) => ({ ...t, uplink: 1, intervalS: 5, timeoutMs: 200, retries: 0 })),
      // And the registry's routers, with the credentials file's secrets (imported below).
      registryFile: join(dir, 'registry.json'),
      credentialsFile: pollerCredentials(),
      registryTargets: { port: ports.closedUdp, intervalS: 5, timeoutMs: 200, retries: 0 },
    },
    api: {
      host: '127.0.0.1',
      port: ports.api,
      registryFile: join(dir, 'registry.json'),
      tokensFile: join(dir, 'api-tokens.json'),
      credentialNamesFile: credentialNames(),
      mqtt: mqtt('api'),
      preloadDays: 0,
    },
    rollup: { enabled: false },
    alerts: {
      stateFile: join(dir, 'alerts-state.json'),
      delivery: { maxAttempts: 1 },
      channels: [
        { kind: 'webhook', name: 'webhook', url: `http://${closed}/hooks/placeholder` },
        { kind: 'wecom', name: 'wecom', url: `http://${closed}/cgi-bin/webhook/send?key=placeholder` },
        {
          kind: 'dingtalk',
          name: 'dingtalk',
          url: `http://${closed}/robot/send?access_token=placeholder`,
          secret: 'placeholder',
        },
        {
          kind: 'feishu',
          name: 'feishu',
          url: `http://${closed}/open-apis/bot/v2/hook/placeholder`,
          secret: 'placeholder',
        },
        {
          kind: 'email',
          name: 'email',
          smtp: {
            host: '127.0.0.1',
            port: ports.closed,
            secure: false,
            username: 'alerts',
            password: 'placeholder',
          },
          from: 'cfm@example.org',
          to: ['noc@example.org'],
        },
      ],
    },
  };
}

/** Lines of `text` that carry a sentinel (case-insensitively: a host name or a header may be lowercased). */
function leaks(text: string): string[] {
  return text.split('\n').filter((l) => l.toLowerCase().includes(SENTINEL));
}

/** Every file a run wrote (spools, state, credentials), except the config files that hold the sentinels. */
function writtenFiles(): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        if (name !== 'influxdb') walk(p); // the stack's database: points, not text
      } else if (!name.startsWith('config-')) out.push(`${relative(dir, p)}: ${readFileSync(p, 'latin1')}`);
    }
  };
  walk(dir);
  return out.join('\n');
}

function printConfig(program: Program, file: string): string {
  const p = PROGRAMS[program];
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', p.entry, ...p.args, '--config', file, '--print-config'],
    {
      cwd: repo,
      env,
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  expect(r.status, `${program}: ${r.stderr}`).toBe(0);
  return `${r.stdout}${r.stderr}`;
}

/**
 * Runs a program until its output satisfies `until` (or it exits), lets `during` look at it while it runs, then
 * stops it with `signal`; returns everything it wrote to stdout and stderr, what `during` saw, and its exit code.
 */
async function run(
  program: Program,
  file: string,
  opts: {
    until: (out: string) => boolean;
    what: string;
    args?: string[];
    during?: () => Promise<string>;
    signal?: NodeJS.Signals;
    timeoutMs?: number;
  },
): Promise<{ out: string; seen: string; code: number | null }> {
  const p = PROGRAMS[program];
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', p.entry, ...p.args, '--config', file, ...(opts.args ?? [])],
    {
      cwd: repo,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.add(child);
  let out = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const closed = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  let seen = '';
  try {
    await waitFor(() => opts.until(out) || !running(), {
      timeoutMs: opts.timeoutMs ?? 30_000,
      what: `${program}: ${opts.what}\n${out}`,
    });
    if (running() && opts.during) seen = await opts.during();
  } finally {
    if (running()) child.kill(opts.signal ?? 'SIGTERM');
  }
  return { out, seen, code: await closed };
}

/** Log lines (JSON) with this message. */
const logged = (out: string, msg: string) =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);

/** The `starting` line: the config a process logs, which must be its own sections only, redacted. */
function expectStartingLine(program: Program, out: string): void {
  const [starting] = logged(out, 'starting');
  expect(starting, out).toBeDefined();
  const config = starting!.config as Record<string, unknown>;
  expect(Object.keys(config).sort()).toEqual(['log', ...PROGRAMS[program].sections].sort());
  // The broker's own section holds no secret (its clients' passwords are hashes in a file).
  if (program !== 'broker') expect(JSON.stringify(config)).toContain('[redacted]');
}

beforeAll(async () => {
  ports.closed = await freePort();
  ports.closedUdp = await freePort(); // nothing listens on UDP there either
  ports.metrics = await freePort();
  ports.api = await freePort();
  await influxd.start();
  unreachable = join(dir, 'config-unreachable.yaml');
  writeFileSync(unreachable, stringify(fillSecrets(baseConfig(`http://127.0.0.1:${ports.closed}/`))));
  const up = fillSecrets(baseConfig(influxd.url));
  (up.influx as Record<string, unknown>).url = influxd.url;
  reachable = join(dir, 'config-reachable.yaml');
  writeFileSync(reachable, stringify(up));
  writeFileSync(
    pollerCredentials(),
    stringify({
      snmp: {
        'e2e-v2': { version: '2c', community: POLLER_SECRETS.community },
        'e2e-v3': {
          version: '3',
          user: 'e2e-poller',
          authKey: POLLER_SECRETS.authKey,
          privKey: POLLER_SECRETS.privKey,
        },
      },
    }),
    { mode: 0o600 },
  );
}, 60_000);

/** A tool run to its end (`credential-names`, `import`): its status and everything it wrote. */
function tool(entry: string, args: string[]): { status: number | null; out: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, ...args], {
    cwd: repo,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await influxd.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('no secret in any output', () => {
  it('the test config fills every field the schemas mark secret', () => {
    const marked = configFields(ALL)
      .filter((f) => f.secret)
      .map((f) => f.path);
    expect([...visited].sort()).toEqual([...new Set(marked)].sort());
    expect(readFileSync(unreachable, 'utf8')).toContain(`${SENTINEL}1`);
  });

  for (const program of Object.keys(PROGRAMS) as Program[]) {
    it(`${program} --print-config shows only its own sections, every secret redacted`, () => {
      const out = printConfig(program, unreachable);
      expect(leaks(out)).toEqual([]);
      const printed = JSON.parse(out) as Record<string, unknown>;
      expect(Object.keys(printed).sort()).toEqual(['log', ...PROGRAMS[program].sections].sort());
      // Redacted, not dropped: an operator sees where each URL points and that a secret is set. (The stack runs
      // its own InfluxDB: the file's URL is not what it uses.)
      if (program !== 'broker' && program !== 'stack')
        expect(out).toContain(`[redacted]@127.0.0.1:${ports.closed}`);
      if (program === 'stack')
        expect(printed.influx).toMatchObject({
          url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/$/),
          token: '[redacted]',
          password: '[redacted]',
        });
    });
  }

  it('collector and api: InfluxDB unreachable at a URL with credentials', async () => {
    for (const program of ['collector', 'api'] as const) {
      const { out, code } = await run(program, unreachable, {
        until: (o) => o.includes('start-up failed'),
        what: 'the storage error',
      });
      expect(leaks(out)).toEqual([]);
      expect(code, out).toBe(1);
      expectStartingLine(program, out);
      const [failed] = logged(out, 'start-up failed');
      expect((failed!.err as { message: string }).message).toContain(
        `InfluxDB at http://[redacted]@127.0.0.1:${ports.closed}/`,
      );
    }
  }, 90_000);

  it('broker: start-up and stop', async () => {
    const { out, code } = await run('broker', reachable, {
      until: (o) => logged(o, 'started').length > 0,
      what: 'the broker to start',
    });
    expect(leaks(out)).toEqual([]);
    expect(code, out).toBe(0);
    expectStartingLine('broker', out);
  }, 60_000);

  it('collector: MQTT unreachable at a URL with credentials; /healthz and /metrics', async () => {
    const { out, seen, code } = await run('collector', reachable, {
      until: (o) => logged(o, 'mqtt disconnected').length > 0,
      what: 'the MQTT connection error',
      during: async () => {
        const base = `http://127.0.0.1:${ports.metrics}`;
        const health = await fetch(`${base}/healthz`);
        expect(health.status).toBe(503);
        return `${await health.text()}\n${await (await fetch(`${base}/metrics`)).text()}`;
      },
    });
    expect(leaks(out)).toEqual([]);
    expect(leaks(seen)).toEqual([]);
    expect(code, out).toBe(0);
    expectStartingLine('collector', out);
    expect(logged(out, 'mqtt disconnected')[0]).toMatchObject({
      url: `mqtt://[redacted]@127.0.0.1:${ports.closed}?token=[redacted]`,
    });
    expect(seen).toContain('cfm_collector');
  }, 60_000);

  it("poller credentials: the names-only copy, an import checked against it, and a broken file's errors", () => {
    // The copy for the API, made the documented way from the poller's config.
    const names = tool('agents/snmp/main.ts', ['credential-names', '--config', reachable]);
    expect(names.status, names.out).toBe(0);
    expect(leaks(names.out)).toEqual([]);
    expect(names.stdout).toContain('e2e-v3');
    writeFileSync(credentialNames(), names.stdout);
    // The registry's routers name the credentials; the API checks the names against the copy.
    writeFileSync(
      join(dir, 'fleet.yaml'),
      stringify({
        regions: UPLINK_REGIONS,
        schools: [uplinkSchool('3301060001'), uplinkSchool('3301060002')],
      }),
    );
    writeFileSync(
      join(dir, 'devices.csv'),
      '设备编号,学校标识码,设备类型,管理地址,SNMP版本,凭据名称\ngw,3301060001,路由器,127.0.0.1,2c,e2e-v2\ngw,3301060002,路由器,127.0.0.1,3,e2e-v3\n',
    );
    const imported = tool('api/main.ts', [
      'import',
      join(dir, 'fleet.yaml'),
      join(dir, 'devices.csv'),
      '--config',
      reachable,
    ]);
    expect(imported.status, imported.out).toBe(0);
    expect(leaks(imported.out)).toEqual([]);
    // The full file where the names are expected: refused, naming the file, quoting none of it.
    const mistaken = join(dir, 'config-mistaken.yaml');
    writeFileSync(
      mistaken,
      stringify({
        api: { registryFile: join(dir, 'registry.json'), credentialNamesFile: pollerCredentials() },
      }),
    );
    const refused = tool('api/main.ts', ['import', join(dir, 'devices.csv'), '--config', mistaken]);
    expect(refused.status).toBe(2);
    expect(refused.out).toContain(`credential names file ${pollerCredentials()}: holds \`snmp:\``);
    expect(leaks(refused.out)).toEqual([]);
    // A credentials file the poller refuses, and one that is not YAML, each with a secret on the bad line.
    const badSchema = join(dir, 'config-bad-credentials.yaml');
    writeFileSync(
      badSchema,
      stringify({
        snmp: { x: { version: '2c', community: POLLER_SECRETS.community, note: POLLER_SECRETS.authKey } },
      }),
    );
    const badYaml = join(dir, 'config-bad-yaml-credentials.yaml');
    writeFileSync(badYaml, `snmp:\n  x: { version: '2c', community: "${POLLER_SECRETS.community}\n`);
    for (const [file, says] of [
      [badSchema, 'snmp.x'],
      [badYaml, 'not valid YAML or JSON (line'],
    ] as const) {
      const r = tool('agents/snmp/main.ts', ['credential-names', '--credentials-file', file]);
      expect(r.status).toBe(2);
      expect(r.out).toContain(`credentials file ${file}: ${says}`);
      expect(leaks(r.out)).toEqual([]);
      // The poller itself, started with it: start-up fails naming the file, quoting none of it.
      const config = join(dir, 'config-poller-bad.yaml');
      writeFileSync(
        config,
        stringify({
          poller: {
            mqtt: { url: `mqtt://127.0.0.1:${ports.closed}` },
            spool: { dir: join(dir, 'poller-spool-bad') },
            registryFile: join(dir, 'registry.json'),
            credentialsFile: file,
          },
        }),
      );
      const started = tool('agents/snmp/main.ts', ['--config', config]);
      expect(started.status, started.out).toBe(1);
      expect(started.out).toContain(file);
      expect(leaks(started.out)).toEqual([]);
    }
    expect(leaks(writtenFiles())).toEqual([]);
  }, 90_000);

  it('api: MQTT and every alert channel unreachable; /health, /metrics and the delivery errors', async () => {
    // An admin token, made the documented way.
    const t = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'api/main.ts',
        'tokens',
        'add',
        'secrets-test',
        '--role',
        'admin',
        '--config',
        reachable,
      ],
      { cwd: repo, env, encoding: 'utf8', timeout: 30_000 },
    );
    expect(t.status, t.stderr).toBe(0);
    expect(leaks(t.stdout + t.stderr)).toEqual([]);
    const token = t.stdout.trim();
    // A notification still pending from before a restart: the API delivers it at start, to every channel.
    const message = {
      title: 'test',
      markdown: 'test',
      text: 'test',
      severity: 'warning',
      resolvedSeverity: 'info',
      json: {},
    };
    const channels = ['webhook', 'wecom', 'dingtalk', 'feishu', 'email'];
    writeFileSync(
      join(dir, 'alerts-state.json'),
      JSON.stringify({
        version: 1,
        active: [],
        history: [],
        queue: [],
        silences: [],
        deliveries: channels.map((channel, i) => ({
          id: `d${i}`,
          channel,
          school: 's1',
          title: 'test',
          createdAtMs: Date.now(),
          attempts: 0,
          status: 'pending',
          lastError: null,
          nextAttemptAtMs: Date.now(),
          message,
        })),
      }),
    );
    const { out, seen, code } = await run('api', reachable, {
      until: (o) =>
        logged(o, 'notification not delivered').length === channels.length &&
        logged(o, 'mqtt disconnected').length > 0 &&
        logged(o, 'api listening').length > 0,
      what: 'every delivery to fail and the MQTT connection error',
      during: async () => {
        const base = `http://127.0.0.1:${ports.api}`;
        const auth = { headers: { authorization: `Bearer ${token}` } };
        const deliveries = await fetch(`${base}/v1/alerts/deliveries`, auth);
        expect(deliveries.status).toBe(200);
        const body = (await deliveries.json()) as { items: { status: string; lastError: string }[] };
        expect(body.items.map((d) => d.status)).toEqual(channels.map(() => 'failed'));
        // The registry's export: the credentials' names, none of their secrets.
        const exported = await fetch(`${base}/v1/registry/export`, auth);
        expect(exported.status).toBe(200);
        const wb = new ExcelJS.Workbook();
        await wb.xlsx.load(await exported.arrayBuffer());
        const cells = JSON.stringify(wb.worksheets.map((w) => w.getSheetValues()));
        expect(cells).toContain('e2e-v3');
        return [
          JSON.stringify(body),
          cells,
          await (await fetch(`${base}/health`)).text(),
          await (await fetch(`${base}/metrics`)).text(),
        ].join('\n');
      },
    });
    expect(leaks(out)).toEqual([]);
    expect(leaks(seen)).toEqual([]);
    expect(code, out).toBe(0);
    expectStartingLine('api', out);
    expect(seen).toContain('"status":"degraded"');
    expect(seen).toContain('cfm_api_alert_deliveries{outcome="failed"} 5');
    // The state file the API wrote on stop keeps the errors too.
    expect(leaks(writtenFiles())).toEqual([]);
  }, 90_000);

  it('agent: MQTT and the PJLink display unreachable', async () => {
    const { out, code } = await run('agent', reachable, {
      until: (o) => logged(o, 'mqtt disconnected').length > 0 && logged(o, 'display read failed').length > 0,
      what: 'the MQTT and PJLink errors',
    });
    expect(leaks(out)).toEqual([]);
    expect(code, out).toBe(0);
    expectStartingLine('agent', out);
    expect(leaks(writtenFiles())).toEqual([]);
  }, 60_000);

  it("poller: MQTT and its SNMP targets (the config's and the registry's: v2c community, v3 keys) unreachable", async () => {
    const { out, code } = await run('poller', reachable, {
      until: (o) => logged(o, 'mqtt disconnected').length > 0 && logged(o, 'target unreachable').length === 4,
      what: 'the MQTT and SNMP errors',
    });
    expect(leaks(out)).toEqual([]);
    expect(code, out).toBe(0);
    expectStartingLine('poller', out);
    // The unreachable events wait in the spool for the broker: no secret in them either.
    expect(leaks(writtenFiles())).toEqual([]);
  }, 60_000);

  it('stack: start-up over a small city and Ctrl-C', async () => {
    const { out, code } = await run('stack', unreachable, {
      args: [
        ...['--schools', '3', '--classrooms', '2', '--history-days', '1', '--outage-after-s', '0'],
        ...['--api-port', '0', '--influx-port', String(await freePort()), '--data-dir', join(dir, 'stack')],
      ],
      until: (o) => o.includes('Ctrl-C stops everything.'),
      what: 'the stack to come up',
      signal: 'SIGINT',
      timeoutMs: 150_000,
    });
    expect(leaks(out)).toEqual([]);
    expect(code, out).toBe(0);
    expect(out).toContain('Ctrl-C stops everything.');
    expect(leaks(writtenFiles())).toEqual([]);
  }, 180_000);
});
