import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../agents/classroom/node-flags.js';
import { processConfigSchema } from '../common/cli.js';
import { loadConfig } from '../common/config.js';
import { MEASUREMENTS } from '../contracts/influx.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { AGENT_BUNDLE, AGENT_ENTRY } from '../scripts/build-agent.js';
import { ALL_SECTIONS } from '../scripts/gen-docs.js';
import { waitFor } from './helpers/influx.js';
import { brokenLinks, relativeLinks } from './helpers/markdown.js';
import { shippedMosquittoConfig } from './helpers/mqtt.js';
import { powershell7Operators, powershellSyntaxErrors } from './helpers/powershell.js';

/** Every example in deploy/examples validates against the sections of each process that reads it. */
const dir = fileURLToPath(new URL('../deploy/examples/', import.meta.url));
const SECTIONS = ALL_SECTIONS;

describe('deploy/examples', () => {
  // calendar-*.yaml are school calendars, not process configuration: tests/common/calendar.test.ts loads them.
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml') && !f.startsWith('calendar-'))) {
    it(`${file} is a valid configuration`, () => {
      const raw = loadConfig(processConfigSchema({}), { file: `${dir}${file}`, env: {} }) as Record<
        string,
        unknown
      >;
      const present = Object.keys(SECTIONS).filter((k) => raw[k] !== undefined) as (keyof typeof SECTIONS)[];
      expect(present.length).toBeGreaterThan(0);
      // Each section strictly, as the process that owns it would.
      const config = loadConfig(
        processConfigSchema(Object.fromEntries(present.map((k) => [k, SECTIONS[k]]))),
        {
          file: `${dir}${file}`,
          env: {},
        },
      );
      expect(config).toBeDefined();
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
// Shared helpers for the deployment files (compose, systemd, docs).

const repo = fileURLToPath(new URL('../', import.meta.url));
const composeDir = join(repo, 'deploy/compose');
const systemdDir = join(repo, 'deploy/systemd');
type SectionName = keyof typeof SECTIONS;
type Config = Record<string, Record<string, unknown> | undefined>;

/** The sections each entry point reads (the `runMain` call of each main.ts). */
const ENTRY_SECTIONS: Record<string, SectionName[]> = {
  'broker/main.ts': ['broker'],
  'collector/main.ts': ['influx', 'collector'],
  'api/main.ts': ['influx', 'api', 'alerts', 'rollup'],
  'agents/snmp/main.ts': ['poller'],
  'agents/classroom/main.ts': ['agent'],
};

/** Loads a config file the way the entry point does: its sections strictly, with the given environment. */
function validate(entry: string, file: string, env: Record<string, string>): Config {
  const sections = ENTRY_SECTIONS[entry];
  if (!sections) throw new Error(`no sections known for ${entry}`);
  return loadConfig(processConfigSchema(Object.fromEntries(sections.map((k) => [k, SECTIONS[k]]))), {
    file,
    env,
  }) as Config;
}

/** The top-level folders a module imports, following relative imports (TypeScript's pre-processor reads them). */
function importedFolders(entry: string): Set<string> {
  const seen = new Set<string>();
  const folders = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file) || !existsSync(file)) return;
    seen.add(file);
    folders.add(relative(repo, file).split('/')[0]!);
    for (const f of ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles)
      if (f.fileName.startsWith('.')) visit(resolve(dirname(file), f.fileName).replace(/\.js$/, '.ts'));
  };
  visit(entry);
  return folders;
}

/** Runs the real entry point with `--print-config` (exits before starting anything); returns its config. */
function printConfig(entry: string, args: string[], env: Record<string, string>): Config {
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, ...args, '--print-config'], {
    cwd: repo,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  expect(r.status, `${entry} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as Config;
}

/** Paths a process writes: they must be on a volume (compose) or in the state directory (systemd). */
function statePaths(entry: string, printed: Config, args: readonly string[] = []): string[] {
  // Only the sections the entry point reads (others in a shared file are left as they are); an API instance of a
  // scaled deployment (`--role api`) runs no alerting, so it writes no alert state.
  const role = args[args.indexOf('--role') + 1];
  const sections = ENTRY_SECTIONS[entry]!.filter(
    (k) => !(args.includes('--role') && role === 'api' && k === 'alerts'),
  );
  const c = Object.fromEntries(sections.map((k) => [k, printed[k]])) as Config;
  const spool = (s: Record<string, unknown> | undefined) => (s?.spool as { dir?: string } | undefined)?.dir;
  return [
    c.broker?.credentialsFile,
    c.api?.registryFile,
    c.api?.tokensFile,
    c.alerts?.stateFile,
    spool(c.agent),
    spool(c.poller),
  ].filter((p): p is string => typeof p === 'string');
}

const within = (path: string, folder: string) =>
  path === folder || path.startsWith(`${folder.replace(/\/$/, '')}/`);

/** `45s`, `1m30s`, `2min` → ms (compose durations and systemd time spans as used here). */
function durationMs(text: string): number {
  const unitMs: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, min: 60_000, h: 3_600_000 };
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)\s*(ms|min|s|m|h)/g)) ms += Number(n) * unitMs[unit!]!;
  return ms;
}

/** `${A}`, `${A:-x}`, `${A-x}`, `${A:?msg}`, `${A?msg}`, `$A` as Docker Compose interpolates them; `$$` is `$`. */
function interpolate(text: string, vars: Record<string, string>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (all, name: string | undefined, op: string | undefined, arg: string | undefined, bare?: string) => {
      if (all === '$$') return '$';
      const key = (name ?? bare)!;
      const value = vars[key];
      const set = op?.startsWith(':') ? value !== undefined && value !== '' : value !== undefined;
      switch (op?.replace(':', '')) {
        case '-':
          return set ? value! : (arg ?? '');
        case '?':
          if (!set) throw new Error(`${key}: ${arg}`);
          return value!;
        case '+':
          return set ? (arg ?? '') : '';
        default:
          return value ?? '';
      }
    },
  );
}

/** Variable names a Compose file interpolates (not `$$`-escaped ones). */
function variablesUsed(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text
    .replace(/\$\$/g, '')
    .matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)/g))
    names.add((m[1] ?? m[2])!);
  return names;
}

/** `NAME=value` lines of an env file (comments and blank lines skipped). */
function envFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string; args?: Record<string, string> };
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  profiles?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string; required?: boolean }>;
  stop_grace_period?: string;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
}

describe('deploy/compose', () => {
  const composeText = readFileSync(join(composeDir, 'compose.yaml'), 'utf8');
  const compose = parseYaml(composeText, { merge: true }) as ComposeFile;
  const envExample = envFile(readFileSync(join(composeDir, '.env.example'), 'utf8'));
  const vars = Object.fromEntries(envExample);
  const services = compose.services;
  /** The project's own services: built from the Dockerfile, run as `node --import tsx <entry> …`. */
  const own = Object.entries(services).filter(([, s]) => s.build !== undefined);

  /** Short volume syntax → source (host path for binds, name for volumes) and container target. */
  const mounts = (s: ComposeService) =>
    (s.volumes ?? []).map((v) => {
      const [source, target] = v.split(':') as [string, string];
      const bind = source.startsWith('.') || source.startsWith('/');
      return { source: bind ? resolve(composeDir, source) : source, target, bind };
    });
  /** The host file behind a path inside the container (a bind mount of the file or of a folder above it). */
  const hostPath = (s: ComposeService, path: string) => {
    for (const m of mounts(s).filter((m) => m.bind && within(path, m.target)))
      return join(m.source, relative(m.target, path));
    return undefined;
  };
  const env = (s: ComposeService) =>
    Object.fromEntries(
      Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(String(v), vars)]),
    );
  const configArg = (args: string[]) => args[args.findIndex((a) => a === '--config' || a === '-c') + 1];

  it('has the services of a production stack, and the project builds one image for its own', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['api', 'broker', 'collector', 'grafana', 'influxdb', 'mosquitto', 'poller'].sort(),
    );
    expect(services.influxdb!.image).toBe('influxdb:2.7');
    expect(services.grafana!.image).toMatch(/^grafana\/grafana-oss:11\.\d+\.\d+$/);
    expect(services.mosquitto!.image).toBe('eclipse-mosquitto:2');
    expect(own.map(([n]) => n).sort()).toEqual(['api', 'broker', 'collector', 'poller']);
    expect(new Set(own.map(([, s]) => s.image)).size).toBe(1);
  });

  it('lists every variable it uses in .env.example, and uses every one listed there', () => {
    const used = variablesUsed(composeText);
    expect(used.size).toBeGreaterThan(10);
    for (const name of used) expect(envExample.has(name), `${name} missing from .env.example`).toBe(true);
    for (const name of envExample.keys())
      if (name !== 'COMPOSE_PROFILES') expect(used.has(name), `${name} is not used`).toBe(true);
    // Placeholders only: no real secret is committed.
    for (const [name, value] of envExample)
      if (/PASSWORD|TOKEN/.test(name)) expect(value, name).toMatch(/^change-me/);
    // Everything required (`${X:?…}`) is set, so `docker compose config` would succeed with a copy of it.
    expect(() => interpolate(composeText, vars)).not.toThrow();
    expect(() => interpolate(composeText, {})).toThrow(/set .* in \.env/);
  });

  it('runs exactly one broker: the profile in .env.example names the embedded one or Mosquitto', () => {
    const profiles = vars.COMPOSE_PROFILES!.split(',');
    expect(profiles).toEqual(['embedded-broker']);
    expect(services.broker!.profiles).toEqual(['embedded-broker']);
    expect(services.mosquitto!.profiles).toEqual(['mosquitto']);
    // Services that need a broker depend on either, optionally, so the inactive one is skipped.
    for (const name of ['collector', 'api', 'poller']) {
      expect(services[name]!.depends_on?.broker?.required, name).toBe(false);
      expect(services[name]!.depends_on?.mosquitto?.required, name).toBe(false);
    }
    expect(env(services.collector!).CFM_COLLECTOR__MQTT__URL).toBe('mqtt://broker:1883');
  });

  it('publishes only the ports users need, on 127.0.0.1 unless .env says otherwise', () => {
    const published = Object.entries(services).filter(([, s]) => s.ports?.length);
    expect(published.map(([n]) => n).sort()).toEqual(['api', 'broker', 'grafana', 'mosquitto']);
    for (const [name, s] of published) {
      for (const p of s.ports!) {
        for (const v of [vars, {}]) {
          const [host, hostPort, containerPort] = interpolate(p, v).split(':');
          expect(host, `${name} ${p}`).toBe('127.0.0.1');
          expect(hostPort).toBe(containerPort);
        }
      }
    }
    expect(services.influxdb!.ports).toBeUndefined();
  });

  for (const [name, service] of own) {
    describe(`service ${name}`, () => {
      const [node, importFlag, loader, entry, ...args] = service.command ?? [];

      it('runs an entry point of this repository with tsx', () => {
        expect([node, importFlag, loader]).toEqual(['node', '--import', 'tsx']);
        expect(ENTRY_SECTIONS[entry!], entry).toBeDefined();
        expect(existsSync(join(repo, entry!)), entry).toBe(true);
      });

      it('mounts its config file, which validates with the variables of .env.example', () => {
        const inContainer = configArg(args);
        expect(inContainer).toMatch(/^\/etc\/cfm\//);
        const file = hostPath(service, inContainer!);
        expect(file && existsSync(file), `${inContainer} is not mounted from an existing file`).toBe(true);
        const config = validate(entry!, file!, env(service));
        // Every service URL names a service of this file.
        const influxUrl = config.influx?.url as string | undefined;
        if (influxUrl) expect(services[new URL(influxUrl).hostname], influxUrl).toBeDefined();
        for (const section of ['collector', 'api', 'poller'] as const) {
          const url = (config[section]?.mqtt as { url?: string } | undefined)?.url;
          if (url) expect(services[new URL(url).hostname], url).toBeDefined();
        }
      });

      it('is started with flags its entry point accepts (--print-config)', () => {
        const inContainer = configArg(args)!;
        const mapped = args.map((a) => (a === inContainer ? hostPath(service, a)! : a));
        const config = printConfig(entry!, mapped, env(service));
        // What it writes survives the container: each state path is on a named volume.
        const volumes = mounts(service).filter((m) => !m.bind);
        for (const p of statePaths(entry!, config)) {
          expect(
            volumes.some((v) => within(p, v.target)),
            `${p} is not on a volume`,
          ).toBe(true);
          expect(Object.keys(compose.volumes)).toContain(volumes.find((v) => within(p, v.target))!.source);
        }
        // Files it only reads are mounted.
        const calendar = config.api?.calendarFile as string | undefined;
        if (calendar) expect(existsSync(hostPath(service, calendar) ?? '/nonexistent'), calendar).toBe(true);
        // A stop waits for buffered writes.
        if (ENTRY_SECTIONS[entry!]!.includes('influx')) {
          expect(durationMs(service.stop_grace_period ?? '10s')).toBeGreaterThan(
            config.influx!.shutdownTimeoutMs as number,
          );
        }
        // Healthchecks probe the port the service listens on.
        const health = service.healthcheck?.test.join(' ') ?? '';
        if (name === 'collector') {
          const metrics = config.collector!.metrics as { port: number };
          expect(health).toContain(`127.0.0.1:${metrics.port}/healthz`);
        }
        if (name === 'api') {
          expect(health).toContain(`127.0.0.1:${config.api!.port}/health`);
          expect(service.ports?.[0]?.endsWith(`:${config.api!.port}:${config.api!.port}`)).toBe(true);
        }
        if (name === 'broker') {
          const tcp = (config.broker!.listeners as { kind: string; port: number; host: string }[]).find(
            (l) => l.kind === 'tcp',
          )!;
          expect(tcp.host).toBe('0.0.0.0'); // reachable from the other containers
          expect(health).toContain(`connect(${tcp.port}, '127.0.0.1')`);
          expect(service.ports?.[0]?.endsWith(`:${tcp.port}:${tcp.port}`)).toBe(true);
        }
      });
    });
  }

  it('has healthchecks where services can answer one', () => {
    for (const name of ['influxdb', 'grafana', 'broker', 'collector', 'api'])
      expect(services[name]!.healthcheck?.test.length, name).toBeGreaterThan(1);
  });

  it('references only files that exist (dashboards/generated excepted while it is being generated)', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const m of mounts(s).filter((m) => m.bind)) {
        if (m.source === join(repo, 'dashboards/generated')) continue;
        expect(existsSync(m.source), `${name}: ${m.source}`).toBe(true);
      }
      for (const m of mounts(s).filter((m) => !m.bind))
        expect(Object.keys(compose.volumes), `${name}: volume ${m.source}`).toContain(m.source);
    }
  });

  describe('Dockerfile', () => {
    const build = own[0]![1].build!;
    const context = resolve(composeDir, build.context);
    const dockerfile = join(context, build.dockerfile);
    const text = readFileSync(dockerfile, 'utf8');
    const ignore = readFileSync(`${dockerfile}.dockerignore`, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));

    it('builds from the repository root with node:20-bookworm-slim and npm ci', () => {
      expect(context).toBe(resolve(repo));
      expect(dockerfile).toBe(join(composeDir, 'Dockerfile'));
      expect(text).toMatch(/^FROM node:20-bookworm-slim$/m);
      expect(text).toMatch(/^RUN npm ci (?!.*--omit=dev)/m); // tsx is a devDependency
      expect(text).toMatch(/^USER node$/m);
      for (const arg of Object.keys(build.args ?? {})) expect(text).toMatch(new RegExp(`^ARG ${arg}=`, 'm'));
    });

    it('copies files that exist, and that its ignore file lets through', () => {
      expect(ignore[0]).toBe('*');
      const copies = [...text.matchAll(/^COPY (.+) (\S+)$/gm)].flatMap((m) => m[1]!.split(' '));
      expect(copies.length).toBeGreaterThan(5);
      for (const src of copies) {
        expect(existsSync(join(context, src)), src).toBe(true);
        expect(ignore, `${src} is excluded from the build context`).toContain(`!${src}`);
      }
      // Everything an entry point imports, directly or not, is in the image.
      for (const entry of Object.keys(ENTRY_SECTIONS))
        for (const top of importedFolders(join(repo, entry)))
          expect(copies, `${entry} needs ${top}/`).toContain(top);
      // What the API serves from files: the console's page and bundle.
      for (const file of ['console/index.html', 'console/dist']) expect(copies).toContain(file);
      for (const shared of ['contracts', 'common']) expect(copies).toContain(shared);
    });
  });

  describe('InfluxDB and Grafana', () => {
    const influx = services.influxdb!;
    const grafana = services.grafana!;
    const initDir = mounts(influx).find((m) => m.target === '/docker-entrypoint-initdb.d')!;
    const script = join(initDir.source, '10-cfm-v1.sh');

    it('sets InfluxDB up from .env, and its init script maps a DBRP and makes a v1 login for Grafana', () => {
      const e = env(influx);
      expect(e.DOCKER_INFLUXDB_INIT_MODE).toBe('setup');
      for (const k of ['USERNAME', 'PASSWORD', 'ORG', 'BUCKET', 'ADMIN_TOKEN'])
        expect(e[`DOCKER_INFLUXDB_INIT_${k}`], k).toBeTruthy();
      expect(statSync(script).mode & 0o111, 'the image runs only executable scripts').not.toBe(0);
      expect(spawnSync('bash', ['-n', script]).status).toBe(0);
      const text = readFileSync(script, 'utf8');
      expect(text).toMatch(/influx v1 dbrp create/);
      expect(text).toMatch(/influx v1 auth create[\s\S]*--read-bucket/);
      // Its variables come from the service's environment or from the image's setup.
      for (const v of variablesUsed(text))
        expect(v in e || v === 'DOCKER_INFLUXDB_INIT_BUCKET_ID', v).toBe(true);
      // The bucket the services use is the one InfluxDB creates.
      for (const [, s] of own.filter(([n]) => n === 'collector' || n === 'api')) {
        expect(env(s).CFM_INFLUX__DATABASE).toBe(e.DOCKER_INFLUXDB_INIT_BUCKET);
        expect(env(s).CFM_INFLUX__ORG).toBe(e.DOCKER_INFLUXDB_INIT_ORG);
      }
    });

    it('provisions the datasource the dashboards reference: uid cfm-influxdb, InfluxQL', () => {
      const target = '/etc/grafana/provisioning/datasources';
      const folder = mounts(grafana).find((m) => m.target === target)!.source;
      const files = readdirSync(folder).filter((f) => f.endsWith('.yaml'));
      expect(files.length).toBe(1);
      const text = readFileSync(join(folder, files[0]!), 'utf8')
        .split('\n')
        .filter((l) => !l.trimStart().startsWith('#'))
        .join('\n');
      const doc = parseYaml(text) as { datasources: Record<string, unknown>[] };
      const ds = doc.datasources.find((d) => d.uid === 'cfm-influxdb')!;
      expect(ds).toMatchObject({ name: 'InfluxDB (cfm)', type: 'influxdb', access: 'proxy' });
      expect(services[new URL(ds.url as string).hostname]).toBe(influx);
      expect((ds.jsonData as { dbName: string }).dbName).toMatch(/^\$\{INFLUX_BUCKET\}$/);
      // The variables Grafana expands are in its environment, with the values InfluxDB was set up with.
      const e = env(grafana);
      for (const v of variablesUsed(text)) expect(e[v], v).toBeDefined();
      expect(e.INFLUX_BUCKET).toBe(env(influx).DOCKER_INFLUXDB_INIT_BUCKET);
      expect(e.GRAFANA_INFLUX_PASSWORD).toBe(env(influx).GRAFANA_INFLUX_PASSWORD);
    });

    it('provisions the generated dashboards from the folder mounted for them', () => {
      const target = '/etc/grafana/provisioning/dashboards';
      const folder = mounts(grafana).find((m) => m.target === target)!.source;
      const files = readdirSync(folder).filter((f) => f.endsWith('.yaml'));
      expect(files.length).toBe(1);
      const doc = parseYaml(readFileSync(join(folder, files[0]!), 'utf8')) as {
        providers: { type: string; options: { path: string } }[];
      };
      expect(doc.providers).toHaveLength(1);
      const path = doc.providers[0]!.options.path;
      const mount = mounts(grafana).find((m) => m.target === path);
      expect(mount?.source).toBe(join(repo, 'dashboards/generated'));
      // Once generated, the dashboards use this datasource (or a template variable, or Grafana's own).
      const generated = join(repo, 'dashboards/generated');
      if (existsSync(generated)) {
        for (const f of readdirSync(generated).filter((f) => f.endsWith('.json'))) {
          const uids = [
            ...readFileSync(join(generated, f), 'utf8').matchAll(
              /"datasource":\s*\{[^{}]*"uid":\s*"([^"]*)"/g,
            ),
          ];
          for (const [, uid] of uids)
            expect(uid, f).toMatch(/^(cfm-influxdb|\$\{?\w+\}?|grafana|-- \w+ --)$/);
        }
      }
    });
  });

  describe('Mosquitto profile (a real Mosquitto with the shipped mosquitto.conf and acl)', () => {
    const m = services.mosquitto!;
    const conf = mounts(m).find((x) => x.target === '/mosquitto/config/mosquitto.conf')!.source;
    const acl = mounts(m).find((x) => x.target === '/mosquitto/config/acl')!.source;
    let tmp = '';
    let broker: Mosquitto | undefined;
    const clients: MqttClient[] = [];
    const password = 'correct-horse-battery';
    const DEVICE = 'dev-3133001234-c0701';
    const OWN = 'cfm/v1/3133001234/c0701-ops';

    /**
     * A client of the shipped profile, with its CONNACK's sessionPresent and its inbox (`topic payload`). The
     * inbox listens from the start: a session's queued messages arrive right behind the CONNACK.
     */
    async function login(username: string | undefined, opts: IClientOptions = {}) {
      const c = mqtt.connect(broker!.url, {
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        protocolVersion: 4,
        ...(username ? { username, password } : {}),
        ...opts,
      });
      clients.push(c);
      const got: string[] = [];
      c.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
      c.on('error', () => {});
      const connack = await new Promise<IConnackPacket>((resolve, reject) => {
        c.once('connect', resolve);
        c.once('error', reject);
        c.once('close', () => reject(new Error('closed before CONNACK')));
      });
      return { c, got, sessionPresent: connack.sessionPresent };
    }

    beforeAll(async () => {
      tmp = mkdtempSync(join(tmpdir(), 'cfm-deploy-mosquitto-'));
      const passwd = join(tmp, 'passwd');
      // Started as root (CI containers), Mosquitto drops to its own user, which must read the password file
      // and write its persistence file.
      chmodSync(tmp, 0o755);
      const data = join(tmp, 'data');
      mkdirSync(data);
      chmodSync(data, 0o777);
      writeFileSync(passwd, '');
      for (const user of ['collector', 'api', DEVICE, 'poller-1']) {
        const r = spawnSync('mosquitto_passwd', ['-b', passwd, user, password], { encoding: 'utf8' });
        expect(r.status, `mosquitto_passwd ${user}: ${r.stderr}`).toBe(0);
      }
      // The shipped file with the container's paths replaced, and its listener moved to a loopback port in
      // place (listener options apply to the `listener` line above them, so the order must stay).
      const shipped = readFileSync(conf, 'utf8');
      expect(shipped.match(/^listener .*$/gm)).toEqual(['listener 1883']);
      const text = shippedMosquittoConfig({ passwd, acl, data });
      expect(text.split('\n').filter((l) => !l.startsWith('#'))).not.toContainEqual(
        expect.stringMatching(/ \/mosquitto\//),
      );
      broker = await new Mosquitto({
        config: (port) => text.replaceAll('{{PORT}}', String(port)),
        dir: tmp,
      }).start();
    });
    afterEach(async () => {
      for (const c of clients.splice(0)) await c.endAsync(true);
    });
    afterAll(async () => {
      await broker?.stop();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it('binds every client id to its username, on its listener', () => {
      const lines = readFileSync(conf, 'utf8').split('\n');
      // A listener option: it must come after the `listener` line it is meant for.
      expect(lines.indexOf('use_username_as_clientid true')).toBeGreaterThan(lines.indexOf('listener 1883'));
    });

    it('refuses anonymous clients; a device publishes only its own topics, a poller only its school’s, the reader (api) only reads', async () => {
      await expect(login(undefined, { clientId: 'anon' })).rejects.toThrow();
      const { c: collector, got } = await login('collector', {
        clientId: 'collector/test',
        protocolVersion: 5,
      });
      await collector.subscribeAsync('$share/collectors/cfm/v1/+/+/+', { qos: 1 });
      const { c: device } = await login(DEVICE, { clientId: DEVICE });
      // Mosquitto acknowledges a refused QoS 1 publish of MQTT 3.1.1 and drops it; the PUBACK comes after it
      // was routed (or not), and the next message of the same client comes after it at the subscriber.
      await device.publishAsync('cfm/v1/3133001234/c0702-ops/telemetry', '{}', { qos: 1 }); // another device's
      await device.publishAsync(`${OWN}/telemetry`, '{"sentinel":1}', { qos: 1 });
      const { c: poller } = await login('poller-1', { clientId: 'poller-1' });
      await poller.publishAsync('cfm/v1/3133009999/gw-01/iface', '{}', { qos: 1 }); // not its school
      await poller.publishAsync('cfm/v1/3133001234/gw-01/iface', '{"sentinel":2}', { qos: 1 });
      // The reader (the API) reads and never writes.
      const { c: reader, got: readerGot } = await login('api', { clientId: 'api' });
      await reader.subscribeAsync('cfm/v1/+/+/status', { qos: 1 });
      await reader.publishAsync(`${OWN}/status`, '{"state":"offline"}', { qos: 1 }); // dropped
      await device.publishAsync(`${OWN}/status`, '{"state":"online"}', { qos: 1 });
      await waitFor(() => got.length >= 3 && readerGot.length >= 1, { what: 'the sentinels' });
      expect(got.sort()).toEqual(
        [
          `cfm/v1/3133001234/gw-01/iface {"sentinel":2}`,
          `${OWN}/status {"state":"online"}`,
          `${OWN}/telemetry {"sentinel":1}`,
        ].sort(),
      );
      expect(readerGot).toEqual([`${OWN}/status {"state":"online"}`]);
    });

    it('a device credential cannot take over the collector’s session: the stopped collector gets every queued reading', async () => {
      // The collector as in production: MQTT 5, a shared subscription, a session that outlives the connection.
      const session = {
        protocolVersion: 5,
        clean: false,
        properties: { sessionExpiryInterval: 3_600 },
      } as const;
      const first = await login('collector', { clientId: 'collector/compose', ...session });
      await first.c.subscribeAsync('$share/collectors/cfm/v1/+/+/+', { qos: 1 });
      await first.c.endAsync(); // the collector stops; its session keeps what arrives meanwhile

      const { c: device } = await login(DEVICE, { clientId: DEVICE });
      const readings = Array.from({ length: 5 }, (_, i) => `{"seq":${i}}`);
      for (const r of readings) await device.publishAsync(`${OWN}/telemetry`, r, { qos: 1 });

      // The device's credential with the collector's client id (and its username as id), each way a
      // careless or hostile installer could: a clean session (which would discard the session it names), a
      // persistent one (which would receive the queued readings), MQTT 3.1.1 and 5.
      for (const [clientId, opts] of [
        ['collector/compose', { clean: false }],
        ['collector/compose', { clean: true }],
        ['collector', { ...session }],
        ['collector', { clean: true, protocolVersion: 5 }],
      ] as const) {
        const what = `${clientId} ${JSON.stringify(opts)}`;
        const attacker = await login(DEVICE, { clientId, ...opts });
        expect(attacker.sessionPresent, what).toBe(false);
        // A round trip after the CONNACK: a session's queued messages would have been sent before its PUBACK.
        await attacker.c.publishAsync(`${OWN}/event`, '{"kind":"probe"}', { qos: 1 });
        expect(attacker.got, what).toEqual([]);
        await attacker.c.endAsync(); // leaving: a clean session would now be discarded
      }

      const back = await login('collector', { clientId: 'collector/compose', ...session });
      expect(back.sessionPresent).toBe(true);
      // Everything queued, in order: the readings, then the four probes the device published to its own event
      // topic while the collector was away (the last message queued).
      const expected = [
        ...readings.map((r) => `${OWN}/telemetry ${r}`),
        ...Array.from({ length: 4 }, () => `${OWN}/event {"kind":"probe"}`),
      ];
      await waitFor(() => back.got.length >= expected.length, { what: 'the queued messages' });
      expect(back.got).toEqual(expected);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('entry points', () => {
  // What each entry point reads is what it prints with --print-config: `log` and its own sections.
  const RUN: Record<string, { args: string[]; example: string }> = {
    'broker/main.ts': { args: ['run'], example: 'server.yaml' },
    'collector/main.ts': { args: [], example: 'server.yaml' },
    'api/main.ts': { args: ['run'], example: 'api.yaml' },
    'agents/snmp/main.ts': { args: [], example: 'poller-shard-0.yaml' },
    'agents/classroom/main.ts': { args: [], example: 'agent.yaml' },
  };
  it.each(Object.entries(ENTRY_SECTIONS))(
    '%s reads the sections this test validates its configuration with',
    (entry, sections) => {
      const { args, example } = RUN[entry]!;
      const printed = printConfig(entry, [...args, '--config', join(dir, example)], {});
      expect(
        Object.keys(printed)
          .filter((k) => k !== 'log')
          .sort(),
      ).toEqual([...sections].sort());
    },
  );
});

type Unit = Record<string, [string, string][]>;

function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      unit[section] = [];
      continue;
    }
    const eq = line.indexOf('=');
    expect(eq, line).toBeGreaterThan(0);
    unit[section]!.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return unit;
}
const get = (u: Unit, section: string, key: string) =>
  u[section]?.filter(([k]) => k === key).map(([, v]) => v) ?? [];

/** Where deploy/systemd/README.md tells users to install each example configuration. */
const INSTALLED_EXAMPLES: Record<string, string> = {
  '/etc/cfm/server.yaml': 'deploy/examples/server.yaml',
  '/etc/cfm/api.yaml': 'deploy/examples/api.yaml',
  '/etc/cfm/api-instance.yaml': 'deploy/examples/api-instance.yaml',
  '/etc/cfm/api-worker.yaml': 'deploy/examples/api-worker.yaml',
  '/etc/cfm/agent.yaml': 'deploy/examples/agent.yaml',
  '/etc/cfm/poller.yaml': 'deploy/examples/poller-shard-0.yaml',
};

describe('deploy/systemd', () => {
  const units = readdirSync(systemdDir).filter((f) => f.endsWith('.service'));
  const readme = readFileSync(join(systemdDir, 'README.md'), 'utf8');
  // `npm run build:agent` (scripts/build-agent.ts): agents/classroom/main.ts → dist/cfm-agent.mjs
  const bundleEntry = AGENT_ENTRY;
  const bundleFile = basename(AGENT_BUNDLE);

  it('has units for the agent, the poller, and broker, collector and API (all in one, or instances and a worker)', () => {
    expect(units.sort()).toEqual(
      [
        'cfm-agent.service',
        'cfm-api.service',
        'cfm-api-instance.service',
        'cfm-api-worker.service',
        'cfm-broker.service',
        'cfm-collector.service',
        'cfm-poller.service',
      ].sort(),
    );
    for (const [installed, example] of Object.entries(INSTALLED_EXAMPLES)) {
      expect(readme, installed).toContain(installed);
      expect(readme, example).toContain(example);
    }
    expect(readFileSync(join(systemdDir, 'cfm.sysusers.conf'), 'utf8')).toMatch(/^u cfm - /m);
  });

  for (const file of units) {
    describe(file, () => {
      const unit = parseUnit(readFileSync(join(systemdDir, file), 'utf8'));
      const svc = (key: string) => get(unit, 'Service', key);

      it('has [Unit], [Service] and [Install], restarts on failure, and is hardened', () => {
        expect(Object.keys(unit)).toEqual(['Unit', 'Service', 'Install']);
        expect(get(unit, 'Unit', 'Description')[0]).toMatch(/^Campus fleet monitor: /);
        expect(get(unit, 'Install', 'WantedBy')).toEqual(['multi-user.target']);
        expect(svc('Restart')).toEqual(['on-failure']);
        expect(svc('RestartPreventExitStatus')).toEqual(['2']); // a configuration error (common/cli.ts)
        expect(svc('ProtectSystem')).toEqual(['strict']);
        expect(svc('NoNewPrivileges')).toEqual(['yes']);
        // The poller's one capability: raw ICMP sockets for its probes' fping (agents/snmp/README.md).
        const caps = file === 'cfm-poller.service' ? ['CAP_NET_RAW'] : [''];
        expect(svc('CapabilityBoundingSet')).toEqual(caps);
        expect(svc('AmbientCapabilities')).toEqual(caps);
        expect(svc('MemoryDenyWriteExecute')).toEqual([]); // breaks the V8 JIT
        const dynamic = svc('DynamicUser')[0] === 'yes';
        expect(dynamic || svc('User')[0] === 'cfm', 'DynamicUser or the cfm user').toBe(true);
        for (const f of svc('EnvironmentFile')) expect(f).toMatch(/^-?\/etc\/cfm\/[\w-]+\.env$/);
        expect(svc('EnvironmentFile')).toHaveLength(1);
      });

      it('starts an entry point with flags it accepts, its state in its StateDirectory', () => {
        const [exec] = svc('ExecStart');
        const argv = exec!.split(/\s+/);
        expect(argv[0]).toBe('/usr/bin/node');
        let i = 1;
        const nodeFlags: string[] = [];
        while (argv[i]!.startsWith('-')) {
          nodeFlags.push(argv[i]!);
          if (argv[i] === '--import') nodeFlags.push(argv[++i]!);
          i++;
        }
        const script = argv[i]!;
        const args = argv.slice(i + 1);
        let entry: string;
        if (script.endsWith('.mjs')) {
          // The bundle of `npm run build:agent`.
          expect(basename(script)).toBe(bundleFile);
          entry = bundleEntry;
          expect(nodeFlags).toEqual(AGENT_NODE_FLAGS);
        } else {
          expect(svc('WorkingDirectory')).toEqual(['/opt/cfm/server']);
          entry = script;
          expect(nodeFlags).toEqual(['--import', 'tsx']);
        }
        expect(existsSync(join(repo, entry)), entry).toBe(true);
        expect(ENTRY_SECTIONS[entry], entry).toBeDefined();

        // The config: an installed example, directly or handed over as a credential (%d).
        const config = args[args.indexOf('--config') + 1]!;
        let installed = config;
        if (config.startsWith('%d/')) {
          const cred = svc('LoadCredential').map((c) => c.split(':') as [string, string]);
          installed = cred.find(([id]) => id === config.slice(3))![1];
        }
        const example = INSTALLED_EXAMPLES[installed];
        expect(example, installed).toBeDefined();
        const environment = Object.fromEntries(
          svc('Environment').map((e) => e.split('=', 2) as [string, string]),
        );
        // The agent's malloc setting (node-flags.ts), which bench:agent measures with.
        if (script.endsWith('.mjs'))
          for (const [k, v] of Object.entries(AGENT_ENV)) expect(environment[k], k).toBe(v);
        const mapped = args.map((a) => (a === config ? join(repo, example!) : a));
        validate(entry, join(repo, example!), environment);
        const printed = printConfig(entry, mapped, environment);

        const stateDirs = svc('StateDirectory').map((d) => `/var/lib/${d}`);
        for (const p of statePaths(entry, printed, args))
          expect(
            stateDirs.some((d) => within(p, d)),
            `${p} is read-only under ProtectSystem=strict`,
          ).toBe(true);
        if (ENTRY_SECTIONS[entry]!.includes('influx')) {
          expect(durationMs(svc('TimeoutStopSec')[0] ?? '90s')).toBeGreaterThan(
            printed.influx!.shutdownTimeoutMs as number,
          );
        }
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------------------

const DOCS = [
  'deploy/README.md',
  'deploy/compose/README.md',
  'deploy/systemd/README.md',
  'docs/deploy-scale-out.md',
  'docs/deploy-windows-agent.md',
];

describe('deployment documentation', () => {
  for (const doc of DOCS) {
    it(`${doc} links only to files (and headings) that exist`, () => {
      expect(relativeLinks(doc).length).toBeGreaterThan(0);
      expect(brokenLinks(doc)).toEqual([]);
    });
  }

  it('deploy/README.md lists every file under deploy/', () => {
    const text = readFileSync(join(repo, 'deploy/README.md'), 'utf8');
    const listed = [...text.matchAll(/^\| (.+?) \|/gm)].flatMap((m) =>
      [...m[1]!.matchAll(/`([^`]+)`/g)].map((c) => c[1]!),
    );
    const matches = (file: string) =>
      listed.some((p) =>
        p.endsWith('/')
          ? file.startsWith(p)
          : new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`).test(file),
      );
    const walk = (d: string): string[] =>
      readdirSync(join(repo, 'deploy', d), { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)],
      );
    const files = walk('').filter((f) => f !== 'README.md' && basename(f) !== '.env');
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) expect(matches(f), `${f} is not in deploy/README.md`).toBe(true);
    expect(text).not.toMatch(/arrive with issue #7/);
  });

  it('the retention guide names everything the project writes, rollups apart', () => {
    const text = readFileSync(join(repo, 'docs/deploy-scale-out.md'), 'utf8');
    const rollupRow = text.split('\n').find((l) => l.startsWith('| API rollup job'))!;
    expect(rollupRow).toBeDefined();
    for (const [name, def] of Object.entries(MEASUREMENTS)) {
      expect(text, name).toContain(`\`${name}\``);
      expect(rollupRow.includes(`\`${name}\``), `${name} in the rollup row`).toBe(
        def.doc.startsWith('Rollup'),
      );
    }
  });

  it('the backup guide names the default path of every state file', () => {
    const text = readFileSync(join(repo, 'docs/deploy-scale-out.md'), 'utf8');
    const defaults = loadConfig(
      processConfigSchema({ api: SECTIONS.api, alerts: SECTIONS.alerts, broker: SECTIONS.broker }),
      { env: {} },
    ) as Config;
    const files = [
      defaults.api!.registryFile,
      defaults.api!.tokensFile,
      defaults.alerts!.stateFile,
      defaults.broker!.credentialsFile,
    ] as string[];
    for (const f of files) expect(text, f).toContain(`\`${f}\``);
  });

  it('the Windows notes configure the agent with a file it accepts and its memory cap', () => {
    const text = readFileSync(join(repo, 'docs/deploy-windows-agent.md'), 'utf8');
    const yaml = /```yaml\n([\s\S]*?)```/.exec(text)![1]!;
    const tmp = mkdtempSync(join(tmpdir(), 'cfm-deploy-doc-'));
    try {
      writeFileSync(join(tmp, 'agent.yaml'), yaml);
      const config = validate('agents/classroom/main.ts', join(tmp, 'agent.yaml'), {});
      expect((config.agent!.spool as { dir: string }).dir).toBe('C:/ProgramData/cfm-agent/spool');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    // Every way of starting the executable passes the agent's node flags (in NODE_OPTIONS) and --config.
    const flags = `NODE_OPTIONS=${AGENT_NODE_FLAGS.join(' ')}`;
    const starts = text.split('\n').filter((l) => /cfm-agent\.exe"? --config/.test(l));
    expect(starts.length).toBeGreaterThanOrEqual(2); // NSSM, the scheduled task
    expect(text.split(flags).length - 1).toBeGreaterThanOrEqual(3); // the service, NSSM, the task
    expect(text).not.toMatch(/cfm-agent\.mjs|node\.exe"? --max/);
    expect(text).toMatch(/not tested on Windows/i);
  });
});

// ---------------------------------------------------------------------------------------------------------
// The Windows package (docs/deploy-windows-agent.md): nothing here can run PowerShell or WinSW, so what can be
// checked without them is: the script parses with the PowerShell grammar, its parameters and exit codes are
// the documented ones, and the service it installs starts the agent with a configuration, spool and flags the
// agent accepts.

describe('deploy/windows', () => {
  const winDir = join(repo, 'deploy/windows');
  const script = readFileSync(join(winDir, 'install.ps1'), 'utf8');
  const xmlText = readFileSync(join(winDir, 'cfm-agent-service.xml'), 'utf8');
  const doc = readFileSync(join(repo, 'docs/deploy-windows-agent.md'), 'utf8');

  it('install.ps1 parses as PowerShell: no syntax error anywhere', async () => {
    const errors = await powershellSyntaxErrors(script);
    expect(errors).toEqual([]);
    // The check itself finds mistakes (an unclosed block, a stray operator).
    expect(await powershellSyntaxErrors('if ($x) {\n  Write-Host "a"\n')).not.toEqual([]);
    expect(await powershellSyntaxErrors('$a = (1 + )\n')).not.toEqual([]);
  });

  it('install.ps1 is ASCII: Windows PowerShell 5.1 reads a script without a byte-order mark in the ANSI code page', () => {
    expect([...script].filter((c) => !/[\t\n\r -~]/.test(c))).toEqual([]);
  });

  it('install.ps1 uses no operator of PowerShell 7: Windows 10 and 11 ship Windows PowerShell 5.1', async () => {
    const ps7 = powershell7Operators;
    expect(await ps7(script)).toEqual([]);
    // The check finds them in code, not in strings or comments.
    expect(await ps7('$a = $b ?? 1\nGet-X && Get-Y\n"a && b" # c || d\n')).toEqual([' ??', '&&']);
  });

  it('install.ps1 takes the documented parameters and exits with the documented codes', () => {
    const params = [...script.matchAll(/^\s*\[(?:string|switch)\]\$(\w+)/gm)].map((m) => m[1]!);
    const table = doc.slice(doc.indexOf('| parameter | default | what |'));
    const documented = [...table.slice(0, table.indexOf('\n\n')).matchAll(/^\| `-(\w+)/gm)].map((m) => m[1]!);
    expect(params.sort()).toEqual(documented.sort());
    const codes = new Set([...script.matchAll(/\b(?:exit|Stop-Install) (\d)\b/g)].map((m) => m[1]!));
    expect([...codes].sort()).toEqual(['0', '1', '2', '3']);
    for (const c of codes) expect(doc).toContain(`**${c}**`);
    // The flags the service passes are the agent's.
    expect(/^\$NodeFlags = '([^']*)'/m.exec(script)?.[1]).toBe(AGENT_NODE_FLAGS.join(' '));
    // It never prints the configuration: the agent's check discards stdout (--print-config) but its error line.
    expect(script).toMatch(/--print-config/);
    expect(script).not.toMatch(/Get-Content[^\n]*\$(source|Config|installedConfig)/);
  });

  it('the service runs the executable with its configuration, spool and flags, which the agent accepts', async () => {
    const { SaxesParser } = await import('saxes');
    type Element = { name: string; attributes: Record<string, string>; text: string };
    const elements: Element[] = [];
    const open: Element[] = [];
    const sax = new SaxesParser();
    sax.on('opentag', (t) => {
      const e = { name: t.name, attributes: t.attributes as Record<string, string>, text: '' };
      elements.push(e);
      open.push(e);
    });
    sax.on('closetag', () => open.pop());
    sax.on('text', (t) => {
      const top = open.at(-1);
      if (top && top.name !== 'service') top.text += t;
    });
    sax.write(xmlText).close(); // throws on XML that is not well-formed
    const one = (name: string) => elements.filter((e) => e.name === name);
    expect(one('id')[0]!.text).toBe('cfm-agent');
    expect(one('executable')[0]!.text).toBe('%BASE%\\cfm-agent.exe');
    const env = Object.fromEntries(one('env').map((e) => [e.attributes.name!, e.attributes.value!]));
    expect(env).toEqual({ NODE_OPTIONS: '@NODE_FLAGS@', CFM_AGENT__SPOOL__DIR: '@DATA_DIR@/spool' });

    // As install.ps1 fills it in for a data folder on D:, then as the agent reads it.
    const dataDir = 'D:/cfm-agent';
    const args = one('arguments')[0]!.text.replaceAll('@DATA_DIR@', dataDir);
    expect(args).toBe(`--config "${dataDir}/agent.yaml"`);
    expect(script).toContain("Join-Path $DataDir 'agent.yaml'");
    const tmp = mkdtempSync(join(tmpdir(), 'cfm-windows-'));
    try {
      writeFileSync(join(tmp, 'agent.yaml'), readFileSync(join(repo, 'deploy/examples/agent-windows.yaml')));
      const config = validate('agents/classroom/main.ts', join(tmp, 'agent.yaml'), {
        CFM_AGENT__SPOOL__DIR: env.CFM_AGENT__SPOOL__DIR!.replaceAll('@DATA_DIR@', dataDir),
      });
      expect((config.agent!.spool as { dir: string }).dir).toBe(`${dataDir}/spool`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('the package is what the script and the documentation expect', async () => {
    const { WINDOWS_PACKAGE_FILES, WINDOWS_PACKAGE_GENERATED } = await import(
      '../scripts/build-agent-sea.js'
    );
    const files = [
      'cfm-agent.exe',
      'cfm-agent-service.exe',
      ...Object.keys(WINDOWS_PACKAGE_FILES),
      ...Object.keys(WINDOWS_PACKAGE_GENERATED),
    ];
    for (const from of Object.values(WINDOWS_PACKAGE_FILES))
      expect(existsSync(join(repo, from)), from).toBe(true);
    const table = doc.slice(doc.indexOf('## The package'), doc.indexOf('## Installing'));
    for (const f of files) expect(table, f).toContain(`| \`${f}\` |`);
    // What install.ps1 requires beside itself is in the package.
    const required = /foreach \(\$file in ([^)]*)\)/
      .exec(script)![1]!
      .match(/'[^']+'/g)!
      .map((q) => q.slice(1, -1));
    for (const f of required) expect(files).toContain(f);
  });

  it("registers the session helper's task when the configuration sets sessionPipe, named after its pipe", async () => {
    const { SESSION_HELPER_SCRIPT } = await import('../agents/sources/activity/windows-script.js');
    // The package's configuration, as the agent reads it: activity from the session helper's pipe.
    const config = validate('agents/classroom/main.ts', join(repo, 'deploy/examples/agent-windows.yaml'), {});
    const agent = config.agent as { activity: { source: string }; windowsHelper: { sessionPipe?: string } };
    expect(agent.activity.source).toBe('windows');
    const pipe = agent.windowsHelper.sessionPipe!;
    expect(pipe).toBe('\\\\.\\pipe\\cfm-activity');
    // install.ps1 takes the pipe's name from it (its .NET pattern, the same in JavaScript)…
    const pattern = new RegExp(/\$property\.Value -match '([^']+)'/.exec(script)![1]!);
    const base = pattern.exec(pipe)![1]!;
    expect(base).toBe('cfm-activity');
    for (const wrong of [
      '/tmp/cfm-activity',
      '\\\\.\\pipe\\a;b',
      '\\\\server\\pipe\\cfm-activity',
      '\\\\.\\pipe\\',
    ])
      expect(pattern.test(wrong), wrong).toBe(false);
    // …which the session helper takes as its own.
    const helperPattern = /\$PipeBase -notmatch '([^']+)'/.exec(SESSION_HELPER_SCRIPT)![1]!;
    expect(new RegExp(helperPattern).test(base)).toBe(true);
    // The task: at every log-on, the Users group by SID (named as this Windows names it), limited rights, a
    // hidden window, one instance per user; removed with -Uninstall, and when the configuration has no pipe.
    expect(/^\$SidUsers = '([^']+)'/m.exec(script)?.[1]).toBe('S-1-5-32-545');
    for (const part of [
      'New-ScheduledTaskTrigger -AtLogOn',
      'New-ScheduledTaskPrincipal -GroupId $users -RunLevel Limited',
      '-WindowStyle Hidden -EncodedCommand $encoded',
      '-MultipleInstances Parallel',
      'if ($pipeBase) { Register-SessionHelper $pipeBase } else { Unregister-SessionHelper }',
    ])
      expect(script).toContain(part);
    const uninstall = script.slice(
      script.indexOf('if ($Uninstall) {'),
      script.indexOf("foreach ($file in 'cfm-agent.exe'"),
    );
    expect(uninstall).toContain('Unregister-SessionHelper');
    // The bootstrap the task runs: PowerShell, and a short command line even for a long install folder with a
    // quote in it (Task Scheduler documents no limit for an action's arguments: nothing to rely on).
    const bootstrap = /\$bootstrap = "([^"]+)"/.exec(script)![1]!;
    const folder = `C:\\Program Files\\${"cfm-agent o'brien ".repeat(10)}\\cfm-session-helper.ps1`.replaceAll(
      "'",
      "''",
    );
    const filled = bootstrap.replace('$file', folder).replace('$PipeBase', 'x'.repeat(64));
    expect(await powershellSyntaxErrors(filled)).toEqual([]);
    expect(filled).toContain('[ScriptBlock]::Create([IO.File]::ReadAllText(');
    const encoded = Buffer.from(filled, 'utf16le').toString('base64');
    expect(
      `-NoLogo -NoProfile -NonInteractive -WindowStyle Hidden -EncodedCommand ${encoded}`.length,
    ).toBeLessThan(2_000);
  });
});
