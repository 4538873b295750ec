// The whole stack on one machine over a simulated city: npm run stack [-- --schools 36 --classrooms 6]
//
// Starts, all on loopback: a local InfluxDB (data under var/influxdb), the embedded MQTT broker, the collector,
// a simulated city (dev/city.ts: three counties, urban and rural schools; a router per school answering
// real SNMP, polled by the SNMP poller; a whiteboard agent per classroom speaking real MQTT through its school's
// uplink), the school days before today written as history and rolled up, and the API with alerting. Then it
// prints where to look and a summary computed from the stored data, simulates a fibre cut at one school, and
// keeps printing what happens. Ctrl-C stops everything. Design: docs/quickstart.md.
// Its state (registry, API tokens, alert state, broker credentials) is kept in var/ at the paths the other
// commands use by default, so `npm run api -- tokens add|import` and `npm run broker -- users` act on it.
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { isAbsolute, relative, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { z } from 'zod';
import { agentConfigSchema, ClassroomAgent } from '../agents/classroom/agent.js';
import { Poller, pollerConfigSchema } from '../agents/snmp/poller.js';
import { API_SECTIONS, composeApiProcess } from '../api/compose.js';
import { Broker, brokerConfigSchema } from '../broker/broker.js';
import { CredentialStore } from '../broker/credentials.js';
import { Collector, collectorConfigSchema } from '../collector/collector.js';
import { Calendar, dateOf, dayNumber, localDate } from '../common/calendar.js';
import {
  type CliCommand,
  parseCli,
  processConfigSchema,
  rememberConfigSecrets,
  shownConfig,
  usageError,
} from '../common/cli.js';
import { ConfigError, loadConfig } from '../common/config.js';
import { BUILTIN_PROFILES, DEFAULT_PROFILE } from '../common/figures/profiles.js';
import { rollups } from '../common/figures/regions.js';
import type { Service } from '../common/lifecycle.js';
import { createLogger } from '../common/log.js';
import { scrubText } from '../common/redact.js';
import { RegistryStore } from '../common/registry/store.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import {
  type CityPlan,
  historyPoints,
  planCity,
  ROOM_SIMULATION,
  type SimSchool,
  uplinkLoad,
} from '../dev/city.js';
import { Influxd } from '../dev/influxd.js';
import { freePort } from '../dev/ports.js';
import { SnmpSim } from '../dev/snmp-sim.js';
import { UplinkRelay } from '../dev/uplink.js';

const STACK = {
  name: 'stack',
  command: 'npm run stack --',
  synopsis: ['[--schools N] [--classrooms N] [--history-days N] [--api-port P] … [--config FILE]'],
  about:
    'The whole stack on this machine over a simulated city, on loopback only: a local InfluxDB, the embedded broker, the collector, a router per school polled over SNMP, a whiteboard agent per classroom, the history rolled up, the API with alerting, and a fibre cut at one school (docs/quickstart.md). Ctrl-C stops everything.',
  options: {
    schools: { type: 'string', value: 'N', default: '36', help: 'schools in the city, 3..600' },
    classrooms: {
      type: 'string',
      value: 'N',
      default: '6',
      help: 'whiteboard classrooms per school (about; rural schools have one fewer), 2..60',
    },
    'history-days': {
      type: 'string',
      value: 'N',
      default: '5',
      help: 'school days before today written as history and rolled up, 1..40',
    },
    'interval-s': {
      type: 'string',
      value: 'S',
      default: '10',
      help: "the agents' and the poller's interval in seconds, 5..300",
    },
    'outage-after-s': {
      type: 'string',
      value: 'S',
      default: '60',
      help: "seconds after start when one school's uplink is cut; 0: no cut",
    },
    'outage-for-s': { type: 'string', value: 'S', default: '600', help: 'how long the cut lasts, seconds' },
    'class-all-day': {
      type: 'boolean',
      help: 'class around the clock, every day (16 periods of 90 minutes), so that the class-time alerts — the fibre cut, a lamp fault — can be tried at any hour; default: weekdays, seven periods 08:00–16:20 China time',
    },
    'api-port': { type: 'string', value: 'PORT', default: '8080', help: 'the API (0: a free port)' },
    'influx-port': { type: 'string', value: 'PORT', default: '18086', help: 'the local InfluxDB' },
    'data-dir': {
      type: 'string',
      value: 'DIR',
      default: 'var',
      help: 'where the InfluxDB data and the state files go, relative to the current directory (`npm run`: the repository); var holds them where `npm run api -- tokens|import` and `npm run broker -- users` look by default',
    },
    config: {
      type: 'string',
      short: 'c',
      value: 'FILE',
      help: 'a YAML config whose `log` and `influx` sections the stack uses (the rest it configures itself)',
    },
    'print-config': {
      type: 'boolean',
      help: 'print the configuration the stack runs with — a section per service it starts, as that service would read it (the first classroom agent standing for all of them; ports are chosen at each start) — secrets redacted, and exit',
    },
  },
} satisfies CliCommand;
const { values } = parseCli(STACK, process.argv.slice(2));
const num = (name: keyof typeof values, min: number, max: number): number => {
  const v = Number(values[name]);
  if (!Number.isInteger(v) || v < min || v > max) {
    usageError(STACK, `--${name} must be an integer ${min}..${max} (got ${String(values[name])})`);
  }
  return v;
};
const opts = {
  schools: num('schools', 3, 600),
  classrooms: num('classrooms', 2, 60),
  historyDays: num('history-days', 1, 40),
  intervalS: num('interval-s', 5, 300),
  outageAfterS: num('outage-after-s', 0, 86_400),
  outageForS: num('outage-for-s', 10, 86_400),
  apiPort: num('api-port', 0, 65_535),
  influxPort: num('influx-port', 1, 65_535),
};

let config: z.output<ReturnType<typeof processConfigSchema<{ influx: typeof influxConfigSchema }>>>;
try {
  config = loadConfig(processConfigSchema({ influx: influxConfigSchema }), { file: values.config });
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  process.stderr.write(`stack: configuration error: ${e.message}\n`);
  process.exit(2);
}
// The stack reads `log` and `influx` of a given file (everything else it configures itself); their secrets are
// scrubbed from its log lines and errors.
rememberConfigSecrets({ influx: influxConfigSchema }, config);
const log = createLogger('stack', { level: config.log.level === 'info' ? 'warn' : config.log.level });
// Two hundred agents reconnecting through a cut uplink would fill the terminal: theirs and the poller's
// warnings stay quiet (the API's alerts tell the story).
const quiet = createLogger('stack', { level: config.log.level === 'info' ? 'error' : config.log.level });
const step = (s: string) => process.stdout.write(`• ${s}\n`);
// The state directory: relative to the current directory, as every command's default paths are (`npm run` runs
// in the repository), so `npm run api -- tokens add|import` and `npm run broker -- users` find the same files.
const varDir = resolve(values['data-dir']);
/** The state files, at the default paths of the commands that manage them (docs/quickstart.md, "State"). */
const state = {
  registry: `${varDir}/registry.json`,
  tokens: `${varDir}/api-tokens.json`,
  alerts: `${varDir}/alerts-state.json`,
  credentials: `${varDir}/broker-credentials.yaml`,
  /** The poller's SNMP credentials, named by the registry's `credentialRef`s (rewritten at each start). */
  pollerCredentials: `${varDir}/poller-credentials.yaml`,
};
/** The credential the simulated routers' registry rows name, and the community their agents answer. */
const ROUTER_CREDENTIAL = { ref: 'city', community: 'public' } as const;
/** A path as the user would type it: relative to the current directory when it lies inside it. */
const shown = (path: string) => {
  const r = relative(process.cwd(), path);
  return r && !r.startsWith('..') && !isAbsolute(r) ? r : path;
};
const now = () => Date.now();
const clock = () => new Date().toLocaleTimeString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false });

const services: Service[] = [];
const timers: NodeJS.Timeout[] = [];
let stopping = false;
async function stopAll(code: number) {
  if (stopping) return;
  stopping = true;
  step('stopping…');
  for (const t of timers) clearInterval(t);
  for (const s of services.reverse())
    await s.stop().catch((err: unknown) => log.error({ err, service: s.name }));
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
const service = (name: string, stop: () => Promise<unknown>) =>
  services.push({ name, start: async () => {}, stop: async () => void (await stop()) });

/** Every section the stack runs with, as `--print-config` shows it: the first classroom agent stands for all. */
const STACK_SECTIONS = {
  influx: influxConfigSchema,
  broker: brokerConfigSchema,
  collector: collectorConfigSchema,
  poller: pollerConfigSchema,
  agent: agentConfigSchema,
  api: API_SECTIONS.api,
  alerts: API_SECTIONS.alerts,
  rollup: API_SECTIONS.rollup,
};

/**
 * `var/stack.yaml`: the quickstart's InfluxDB and API state files as a config file, for the `npm run api`
 * commands that need more than the state directory — `npm run api -- rollup --config var/stack.yaml --from D`.
 * Rewritten at each start (the ports are this start's). It holds no secret: the InfluxDB password or token of a
 * `--config` that has them is given again in the environment (`CFM_INFLUX__PASSWORD`, `CFM_INFLUX__TOKEN`).
 */
function writeStackConfig(c: ReturnType<typeof stackConfig>): void {
  const { url, database, retentionPolicy, org, token, username, password, writeApi } = c.influx;
  const file = `${varDir}/stack.yaml`;
  // No secret is written: a --config's InfluxDB password or token is given again in the environment.
  const section = JSON.parse(
    JSON.stringify({ url, database, retentionPolicy, org, username, writeApi }),
  ) as Record<string, unknown>;
  const secrets = [password && 'CFM_INFLUX__PASSWORD', token && 'CFM_INFLUX__TOKEN'].filter(Boolean);
  const note = secrets.length
    ? `# The InfluxDB ${password ? 'password' : 'token'} of your --config is not written here: set ${secrets.join(' and ')} in the environment.\n`
    : '';
  rmSync(file, { force: true }); // a file left by hand with a looser mode is not written into
  writeFileSync(
    file,
    `# Written by \`npm run stack\` at each start: its InfluxDB and state files, for \`npm run api -- … --config ${shown(file)}\`.\n${note}${stringify(
      {
        influx: section,
        api: {
          registryFile: c.api.registryFile,
          tokensFile: c.api.tokensFile,
          calendarFile: c.api.calendarFile,
          profiles: c.api.profiles,
        },
      },
    )}`,
    { mode: 0o600 },
  );
}

/**
 * The city's registry with each school router's row saying how the poller reaches it: SNMP v2c at its SnmpSim
 * on loopback, with the `city` credential, and a TCP probe of its management port — loopback answers every
 * ping, so an ICMP probe could not see the fibre cut; the cut closes that port (a refused connect is lost).
 */
function cityRegistry(plan: CityPlan, b: Bound): CityPlan['registry'] {
  const routers = new Map(plan.schools.map((s) => [s.router, s.id]));
  return {
    ...plan.registry,
    devices: plan.registry.devices.map((d) => {
      const school = routers.get(d.id);
      if (d.kind !== 'router' || school !== d.school) return d;
      return {
        ...d,
        mgmtAddress: '127.0.0.1',
        snmpPort: b.routerPort(school),
        snmpVersion: '2c' as const,
        credentialRef: ROUTER_CREDENTIAL.ref,
        probeMethod: 'tcp' as const,
        probePort: b.routerTcpPort(school),
      };
    }),
  };
}

const DEFAULT_PROFILE_DEF = BUILTIN_PROFILES.find((p) => p.id === DEFAULT_PROFILE)!;

/** Its own InfluxDB: the file's `influx` section (database, credentials, timeouts) at the local influxd. */
const influx = influxConfigSchema.parse({ ...config.influx, url: `http://127.0.0.1:${opts.influxPort}` });

/** What a start decides: the ports the simulated city's sockets got, and the secrets of the broker users. */
interface Bound {
  brokerPort: number;
  routerPort: (school: string) => number;
  /** The router's management TCP port: what the poller probes (loopback always answers ICMP). */
  routerTcpPort: (school: string) => number;
  relayPort: (school: string) => number;
  hookPort: number;
  secret: (username: string) => string;
}

/**
 * The configuration of every service the stack starts, each section as its own process would read it from a
 * file (validated, defaults filled in): what the stack runs with, and what `--print-config` prints.
 */
function stackConfig(plan: CityPlan, from: string, today: string, b: Bound) {
  const url = `mqtt://127.0.0.1:${b.brokerPort}`;
  const mqtt = (username: string, at = url) => ({ url: at, username, password: b.secret(username) });
  const apiProcess = processConfigSchema(API_SECTIONS).parse({
    influx,
    api: {
      port: opts.apiPort,
      registryFile: state.registry,
      tokensFile: state.tokens,
      calendarFile: `${varDir}/stack-calendar.yaml`, // generated around today, rewritten at each start
      // The default profile, idle after the history's teaching days rather than four teaching weeks the demo
      // does not have: the summary, the console's 闲置设备 and /v1/audit/idle count the same whiteboards.
      profiles: [
        {
          ...DEFAULT_PROFILE_DEF,
          idleDays: opts.historyDays,
          sources: {
            ...DEFAULT_PROFILE_DEF.sources,
            idleDays: `the quickstart: idle when unused on all ${opts.historyDays} teaching days of its history (--history-days)`,
          },
        },
      ],
      // The live view and alerting only read: a `reader`, never counted as the collector devices wait for.
      mqtt: mqtt('api'),
    },
    rollup: { everyMs: 600_000, lateDays: dayNumber(today) - dayNumber(from) },
    alerts: {
      stateFile: state.alerts,
      groupWaitS: 10,
      // Notifications go to a webhook on loopback that prints them here (a deployment names its robots instead).
      channels: [{ kind: 'webhook', name: 'terminal', url: `http://127.0.0.1:${b.hookPort}/` }],
    },
  });
  return {
    log: config.log,
    influx: apiProcess.influx,
    broker: brokerConfigSchema.parse({
      credentialsFile: state.credentials,
      listeners: [{ kind: 'tcp', host: '127.0.0.1', port: b.brokerPort }],
    }),
    collector: collectorConfigSchema.parse({
      mqtt: mqtt('collector'),
      metrics: { port: 0 },
      registryFile: state.registry,
    }),
    // Its targets come from the registry alone, as in a deployment (docs/links.md): each school's router row
    // names its address, SNMP port, credential and probe (cityRegistry), the credentials file the community.
    poller: pollerConfigSchema.parse({
      mqtt: mqtt('poller'),
      spool: { dir: `${varDir}/stack-spool/poller` },
      registryFile: state.registry,
      credentialsFile: state.pollerCredentials,
      registryTargets: { intervalS: opts.intervalS },
      // A cycle of 5 connects spread over 40 % of the interval, each given a tenth of it to answer; the routers'
      // addresses are IP addresses, so half a second is ample for the (skipped) name lookups. The cycle fits its
      // interval at the least one, 5 s: 0.5 + 5 × 0.4 + 0.5 = 3 s.
      probes: {
        enabled: true,
        intervalS: opts.intervalS,
        count: 5,
        periodMs: opts.intervalS * 80,
        timeoutMs: opts.intervalS * 100,
        resolveTimeoutMs: 500,
      },
    }),
    // Each school's agents reach the broker through the school's uplink (a relay that can be cut).
    agents: plan.schools.flatMap((s) =>
      s.rooms.map((r) =>
        agentConfigSchema.parse({
          school: s.id,
          device: r.device,
          classroom: r.id,
          region: `330000/330100/${s.county.id}`,
          kind: 'whiteboard',
          intervalS: opts.intervalS,
          mqtt: mqtt(r.device, `mqtt://127.0.0.1:${b.relayPort(s.id)}`),
          spool: { dir: `${varDir}/stack-spool/${r.device}` },
          display: { source: 'simulated', idle: r.idle, faulty: r.faulty, ...ROOM_SIMULATION },
          // The person at the board, in step with the simulated display (agents/sources/activity/simulated.ts).
          activity: { source: 'simulated' },
        }),
      ),
    ),
    api: apiProcess.api,
    alerts: apiProcess.alerts,
    rollup: apiProcess.rollup,
  };
}

try {
  const today = localDate(now());
  const plan = planCity({
    schools: opts.schools,
    classrooms: opts.classrooms,
    today,
    classAllDay: values['class-all-day'] === true,
  });
  const cal = new Calendar(plan.calendar);
  const rooms = plan.schools.reduce((n, s) => n + s.rooms.length, 0);
  const outageSchool = plan.schools.find((s) => s.scenario === 'outage');
  const congested = plan.schools.find((s) => s.scenario === 'congested');
  // The school days before today (and today's periods so far): what the reports compute from.
  let from = today;
  for (let d = dayNumber(today) - 1, n = 0; n < opts.historyDays; d--)
    if (cal.day(dateOf(d)).kind === 'teaching') {
      from = dateOf(d);
      n++;
    }

  // The simulated city's sockets on loopback, first: the ports they get are part of the configuration. A router
  // per school (a real SNMP agent), the school's uplink (a relay to the broker that can be cut), and the webhook
  // that prints notifications.
  const brokerPort = await freePort();
  const routers = new Map<string, SnmpSim>();
  const relays = new Map<string, UplinkRelay>();
  for (const s of plan.schools) {
    const router = await new SnmpSim({
      sysName: s.router,
      community: ROUTER_CREDENTIAL.community,
      managementTcp: true,
      ifaces: [
        {
          index: 1,
          name: 'GigabitEthernet0/0/0',
          alias: '上联 教育城域网',
          highSpeedMbps: s.uplinkMbps,
          operStatus: 1,
          inOctets: 0n,
          outOctets: 0n,
        },
      ],
    }).start();
    routers.set(s.id, router);
    service(`router ${s.id}`, () => router.stop());
    const relay = await new UplinkRelay({ host: '127.0.0.1', port: brokerPort }).start();
    relays.set(s.id, relay);
    service(`uplink ${s.id}`, () => relay.stop());
  }
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      try {
        const n = JSON.parse(body) as { title: string; items: { kind: string; affected?: string[] }[] };
        const affected = n.items.reduce((a, i) => a + (i.affected?.length ?? 0), 0);
        process.stdout.write(
          `[${clock()}] 告警通知 ${n.title}${affected ? `（受影响设备 ${affected} 台）` : ''}\n`,
        );
      } catch {
        // not ours
      }
      res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  service('webhook', () => new Promise<void>((resolve) => hook.close(() => resolve())));
  const bound = (secret: Bound['secret']): Bound => ({
    brokerPort,
    routerPort: (id) => routers.get(id)!.port,
    routerTcpPort: (id) => routers.get(id)!.tcpPort,
    relayPort: (id) => relays.get(id)!.port,
    hookPort: (hook.address() as { port: number }).port,
    secret,
  });

  if (values['print-config']) {
    // Nothing is written or started beyond those sockets: the broker users' secrets are made at start (and are
    // redacted here), and each start binds free ports again.
    const { agents, ...c } = stackConfig(
      plan,
      from,
      today,
      bound(() => 'generated at start'),
    );
    process.stdout.write(
      `${JSON.stringify(shownConfig(STACK_SECTIONS, { ...c, agent: agents[0] }), null, 2)}\n`,
    );
    process.exit(0);
  }

  step('InfluxDB (influxd 1.x, data in var/influxdb)');
  // Its own process group: Ctrl-C must reach us first, so the storage can flush into influxd before it stops.
  const influxd = new Influxd({ dataDir: `${varDir}/influxdb`, port: opts.influxPort, detached: true });
  await influxd.start();
  service('influxd', () => influxd.stop());

  const storage = new Storage(influx, { log });
  const info = await storage.start();
  service('storage', () => storage.stop());
  step(
    `simulated city: ${plan.schools.length} schools in 3 counties (${plan.schools.filter((s) => s.area === 'rural').length} rural), ${rooms} classrooms with whiteboards; history ${from} … ${today} (class periods only)`,
  );
  const t0 = performance.now();
  const history = historyPoints(plan, from, today, now());
  for (let i = 0; i < history.length; i += 20_000) {
    storage.write(history.slice(i, i + 20_000));
    await storage.flush();
    process.stdout.write(
      `\r  writing history: ${Math.min(i + 20_000, history.length)}/${history.length} readings`,
    );
  }
  process.stdout.write(` in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  step('MQTT broker (embedded aedes, deny by default)');
  rmSync(`${varDir}/stack-spool`, { recursive: true, force: true });
  const store = new CredentialStore(state.credentials);
  // The file is shared with `npm run broker -- users …`: users added there stay; the stack's own users get fresh
  // secrets each start (only hashes are stored, so the previous ones are unknown to it).
  const issue = async (spec: Parameters<CredentialStore['add']>[0]): Promise<string> => {
    await store.load();
    const e = store.get(spec.username);
    const same =
      e?.role === spec.role &&
      (e.role !== 'device' ||
        (spec.role === 'device' && e.school === spec.school && e.device === spec.device)) &&
      e.role !== 'poller'; // its schools follow --schools
    if (same) return store.rotate(spec.username);
    if (e) await store.revoke(spec.username);
    return store.add(spec);
  };
  const secrets = new Map<string, string>();
  for (const s of plan.schools)
    for (const r of s.rooms)
      secrets.set(
        r.device,
        await issue({ username: r.device, role: 'device', school: s.id, device: r.device }),
      );
  secrets.set('collector', await issue({ username: 'collector', role: 'collector' }));
  secrets.set(
    'poller',
    await issue({ username: 'poller', role: 'poller', schools: plan.schools.map((s) => s.id) }),
  );
  secrets.set('api', await issue({ username: 'api', role: 'reader' }));
  const b = bound((username) => secrets.get(username)!);
  const c = stackConfig(plan, from, today, b);

  const broker = new Broker(c.broker, { log });
  await broker.start();
  services.push(broker);
  const url = `mqtt://127.0.0.1:${brokerPort}`;

  // The registry is written first: the collector attributes every reading by it (region, classroom, or
  // `unassigned`), and the API serves it. The city is imported into the registry there is (rows update by id), so
  // what `npm run api -- import` added to it stays.
  const registry = new RegistryStore(c.api.registryFile).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(cityRegistry(plan, b))) }]);
  // The community the routers' `credentialRef` names: in the poller's credentials file only (0600; a file left
  // by hand with a looser mode is not written into), never in the registry.
  rmSync(state.pollerCredentials, { force: true });
  writeFileSync(
    state.pollerCredentials,
    `# Written by \`npm run stack\` at each start: the SNMP credential its routers' registry rows name.\n${stringify(
      { snmp: { [ROUTER_CREDENTIAL.ref]: { version: '2c', community: ROUTER_CREDENTIAL.community } } },
    )}`,
    { mode: 0o600 },
  );
  const others = [...registry.index.schools.keys()].filter((id) => !plan.schools.some((s) => s.id === id));
  if (others.length > 0)
    step(
      `${shown(c.api.registryFile)} also holds ${others.length === 1 ? '1 school' : `${others.length} schools`} not in the simulated city (imported, or from a larger --schools); remove the file to start afresh`,
    );

  step('collector');
  const collector = new Collector(c.collector, { log, storage });
  await collector.start();
  services.push(collector);
  await collector.ready();

  step(`API with alerting (registry and calendar of the city; rolling up ${from} … ${today})`);
  writeFileSync(c.api.calendarFile, stringify({ calendars: [plan.calendar] }));
  writeStackConfig(c);
  const apiProcess = composeApiProcess('all', c, log, { storage });
  const api = apiProcess.server;
  // Tokens are kept across starts (tokens add|revoke work on the same file): an admin token is made, and shown,
  // only when the file holds none; only its hash is stored, so one made by an earlier start cannot be shown again.
  const tokens = api.tokens.load();
  const adminToken = tokens.list().some((t) => t.role === 'admin')
    ? undefined
    : tokens.add('quickstart admin', 'admin').token;
  await api.start();
  services.push(api);

  step(
    `${plan.schools.length} school routers (real SNMP agents on loopback) and the SNMP poller (its targets and probes from the registry)`,
  );
  // Traffic every second, following the model the history was written from.
  const inClass = (ms: number) => cal.isTeachingTime(ms);
  timers.push(
    setInterval(() => {
      const t = now();
      for (const s of plan.schools) {
        const bytes = BigInt(Math.round((uplinkLoad(s, t, inClass(t)) * s.uplinkMbps * 1e6) / 8));
        routers.get(s.id)!.advance(1, bytes, bytes / 4n);
      }
    }, 1_000),
  );
  const poller = new Poller(c.poller, { log: quiet });
  await poller.start();
  services.push(poller);

  let started = 0;
  for (const a of c.agents) {
    const agent = new ClassroomAgent(a, { log: quiet });
    await agent.start();
    services.push(agent);
    process.stdout.write(`\r• whiteboard agents: ${++started}/${rooms}`);
  }
  process.stdout.write('\n');

  step('rolling up the history (the API does this every 10 minutes from now on)');
  await apiProcess.rollup?.run();

  // The console's and the overview page's default period, the last 30 days: the summary and the curl line use it.
  const shownPeriod = { from: dateOf(dayNumber(today) - 29), to: today };
  const schoolName = (id: string) => plan.schools.find((s) => s.id === id)?.name ?? id;
  // Another admin token, on the same file: `npm run api -- tokens add`, told where the file is when not at its default.
  const addToken = `${varDir === resolve('var') ? '' : `CFM_API__TOKENS_FILE=${state.tokens} `}npm run api -- tokens add <name> --role admin`;
  const bearer = adminToken ?? '$TOKEN';
  console.log(`
Where to look
  console         ${api.url}/console/${adminToken ? `#token=${adminToken}` : ''}   (open this first: 总览, 网络, 告警, 设备, 闲置设备)
  overview page   ${api.url}/overview${adminToken ? `#token=${adminToken}` : ''}
  API             ${api.url}   ${adminToken ? `(admin token: ${adminToken})` : `(the admin token printed at the first start is kept in ${shown(state.tokens)}; another: ${addToken})`}
    curl -s -H "authorization: Bearer ${bearer}" '${api.url}/v1/attainment?period=${shownPeriod.from}..${shownPeriod.to}'
    curl -s -H "authorization: Bearer ${bearer}" ${api.url}/v1/alerts
    curl -sN -H "authorization: Bearer ${bearer}" ${api.url}/v1/bandwidth/live
  state           ${shown(varDir)}/: registry.json, api-tokens.json, alerts-state.json, broker-credentials.yaml — kept
                  across starts; \`npm run api -- tokens add|import\` and \`npm run broker -- users\` work on them
  InfluxDB ${info.version}  ${influxd.url}  (database "${config.influx.database}"; Grafana: dashboards/README.md)
  MQTT broker     ${url}
  metrics         http://127.0.0.1:${collector.metricsPort}/metrics (collector), ${api.url}/metrics (API)
`);

  const summary = async () => {
    const profile = api.profiles.get(api.config.defaultProfile)!;
    // Idle as the API judges it: the quickstart's profile is idle after the history's teaching days.
    // The same figures as on every screen (shownPeriod), with how much of it the history covers.
    const period = shownPeriod;
    const ev = await api.reports.evaluation(period, profile);
    const reg = api.registry.index;
    const rows = rollups(ev, reg, undefined).filter((r) => r.split === 'all' && r.regionLevel !== 'province');
    const pct = (v: number | null) => (v === null ? '   –' : `${v.toFixed(1).padStart(5)} %`);
    const lines = [
      `Summary ${period.from} … ${period.to}, the last 30 days as the console shows them (profile ${profile.id}, computed from the stored data: judged on ${ev.coverage.rolledDays} of ${ev.coverage.teachingDates} teaching days)`,
      '  region        schools  校校通      班班通     生机比',
      ...rows.map(
        (r) =>
          `  ${r.regionName.padEnd(10, '　').slice(0, 6)}${String(r.schools).padStart(6)}   ${pct(r.xxtPct)}   ${pct(r.bbtPct)}   ${r.studentsPerComputer === null ? '–' : `${r.studentsPerComputer.toFixed(1)}:1`}`,
      ),
    ];
    const busiest = [...ev.schools]
      .filter((s) => (s.uplink.busyPct ?? 0) > 0)
      .sort((a, b) => (b.uplink.busyPct ?? 0) - (a.uplink.busyPct ?? 0))
      .slice(0, 3);
    lines.push(
      `  most congested uplinks (share of class time at or above the congestion threshold):${busiest.length === 0 ? ' none' : ''}`,
    );
    for (const s of busiest)
      lines.push(
        `    ${s.name}  ${s.uplink.busyPct?.toFixed(0)} % of class time busy, ${s.uplink.capacityMbps} Mbit/s${s.uplink.congested ? '  拥塞' : ''}`,
      );
    const idle = ev.devices.filter((d) => d.idle);
    lines.push(
      `  idle equipment: ${idle.length} whiteboards not used in ${ev.idleDays} teaching days — the console's 闲置设备 (e.g. ${idle
        .slice(0, 3)
        .map((d) => `${schoolName(d.school)} ${reg.classroom(d.school, d.classroom ?? '')?.name ?? d.id}`)
        .join('; ')})`,
    );
    // Classroom use as the audit reports it (/v1/audit/devices, docs/usage.md): summed over the whiteboards.
    const boards = ev.devices.filter((d) => d.kind === 'whiteboard');
    const sum = (f: (d: (typeof boards)[number]) => number) =>
      Math.round(boards.reduce((a, d) => a + f(d), 0));
    lines.push(
      `  whiteboards in class time: ${sum((d) => d.poweredOnHours)} h on, ${sum((d) => d.inUseHours)} h in use, ${sum((d) => d.onUnusedHours)} h on but unused; ${sum((d) => d.leftOnHours)} h left on outside class; use judged by activity for ${boards.filter((d) => d.useBasis === 'activity').length} of ${boards.length} (by power alone: ${boards.filter((d) => d.useBasis === 'power').length})`,
    );
    lines.push(liveLine());
    console.log(lines.join('\n'));
  };
  const liveLine = () => {
    const offline = new Map<string, number>();
    let online = 0;
    for (const s of plan.schools)
      for (const r of s.rooms) {
        if (api.live.device(s.id, r.device)?.state === 'online') online++;
        else offline.set(s.id, (offline.get(s.id) ?? 0) + 1);
      }
    const firing = [...(apiProcess.alerts?.engine.active.values() ?? [])].filter((a) => a.state === 'firing');
    const off = [...offline].map(([id, n]) => `${schoolName(id)} ${n}`).join(', ');
    // The routers whose last probe cycle got an answer (a TCP connect to the management port).
    const answering = plan.schools.filter((s) => (api.live.link(s.id, s.router)?.received ?? 0) > 0).length;
    const c = congested ? api.live.uplink(congested.id, congested.router) : undefined;
    const cMbps = c?.inBps
      ? ` · ${congested!.name} uplink ${(c.inBps / 1e6).toFixed(1)}/${congested!.uplinkMbps} Mbit/s`
      : '';
    return `[${clock()}] whiteboards online ${online}/${rooms}${off ? ` · offline: ${off}` : ''} · routers answering probes ${answering}/${plan.schools.length} · alerts firing ${firing.length}${inClass(now()) ? '' : ' (outside class time: offline alerts wait for class; --class-all-day tries them at any hour)'}${cMbps}`;
  };
  await summary();
  timers.push(setInterval(() => process.stdout.write(`${liveLine()}\n`), 15_000));
  timers.push(setInterval(() => void summary().catch((err: unknown) => log.error({ err })), 600_000));

  if (outageSchool && opts.outageAfterS > 0) {
    const cut = (s: SimSchool) => {
      process.stdout.write(
        `[${clock()}] simulated fibre cut at ${s.name} (${s.id}): its router and ${s.rooms.length} whiteboards drop off for ${opts.outageForS} s\n`,
      );
      relays.get(s.id)!.cut();
      // Neither may end the stack: a router that does not stop or come back (its management port taken in the
      // meantime: EADDRINUSE) is said and logged, and the stack goes on with that router down.
      routers
        .get(s.id)!
        .stop()
        .catch((err: unknown) => log.error({ err, school: s.id }, 'stopping the simulated router failed'));
      timers.push(
        setTimeout(() => {
          process.stdout.write(`[${clock()}] ${s.name}: uplink restored\n`);
          relays.get(s.id)!.restore();
          routers
            .get(s.id)!
            .start()
            .catch((err: unknown) => {
              process.stdout.write(
                `[${clock()}] ${s.name}: its router did not come back (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); it stays down, the rest goes on\n`,
              );
              log.error({ err, school: s.id }, 'restarting the simulated router failed');
            });
        }, opts.outageForS * 1000),
      );
    };
    timers.push(setTimeout(() => cut(outageSchool), opts.outageAfterS * 1000));
  }
  console.log('Ctrl-C stops everything.');
} catch (err) {
  console.error(scrubText(`stack failed to start: ${(err as Error).stack ?? (err as Error).message}`));
  await stopAll(1);
}
