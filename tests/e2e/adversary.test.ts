import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IClientOptions, MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentConfigSchema, ClassroomAgent } from '../../agents/classroom/agent.js';
import { TokenStore } from '../../api/tokens.js';
import { Broker, type BrokerConfig } from '../../broker/broker.js';
import { Collector, collectorConfigSchema } from '../../collector/collector.js';
import {
  type CalendarDef,
  Calendars,
  CST_OFFSET_MS,
  dateOf,
  dayNumber,
  localDate,
  localMidnightMs,
  WEEKDAYS,
} from '../../common/calendar.js';
import { type LiveMessage, LiveState } from '../../common/live.js';
import { type Logger, silentLogger } from '../../common/log.js';
import { mqttConfigSchema } from '../../common/mqtt.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import { EXAMPLES } from '../../contracts/examples.js';
import { UNASSIGNED_REGION } from '../../contracts/influx.js';
import type { TopicPayloads } from '../../contracts/messages.js';
import type { Registry } from '../../contracts/registry.js';
import { buildTopic, type Channel } from '../../contracts/topics.js';
import { testApp } from '../helpers/api.js';
import { cityRollup } from '../helpers/city.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { statusOf as status } from '../helpers/messages.js';
import {
  closed,
  connectClient,
  Mosquitto,
  shippedMosquittoConfig,
  startBroker,
  type UserSpec,
} from '../helpers/mqtt.js';

/**
 * The adversarial-device suite of issue #12, end to end with real parts: real MQTT clients holding real device
 * and poller credentials → the broker and its ACL (the embedded one, and Mosquitto with the shipped profile and
 * an ACL in the shipped grammar) → the collector with a registry file → a real influxd → the API with a live view
 * on the same broker (a `reader` credential). Every case asserts what InfluxDB holds — also through a county's
 * Grafana-style region filter — and what each county's API token sees.
 *
 * School A (西湖区, county A) registers its router gw-a, the panel wb-a1 (一(1)班), the panel ops-a2 (一(2)班) and
 * the teacher PC pc-a1; school B (滨江区, county B) its router gw-b and the panel wb-b1. A device of school B that
 * also calls itself wb-a1 is not registered. Pollers are bound to one school each.
 */
const A_PATH = '330000/330100/330106';
const B_PATH = '330000/330100/330108';
/** What a county's Grafana dashboards filter on (dashboards/src/lib.ts IN_REGION, the path regex-escaped). */
const IN_COUNTY_A = `region =~ /^${A_PATH.replaceAll('/', '\\/')}/`;
const IN_COUNTY_B = `region =~ /^${B_PATH.replaceAll('/', '\\/')}/`;
const DAY_MS = 86_400_000;
/** The one password of every Mosquitto user (the embedded broker generates a secret per user). */
const PASSWORD = 'correct-horse-battery';
const UPLINK_IF = 'Gi0/0/1';
const repo = fileURLToPath(new URL('../../', import.meta.url));

const influxd = new Influxd();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-adversary-'));
// Started as root (CI containers), Mosquitto drops to its own user, which must reach its files in here.
chmodSync(tmp, 0o755);
beforeAll(async () => {
  await influxd.start();
});
afterAll(async () => {
  await influxd.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

/** Clients and agents of one test, ended after it. */
const clients: MqttClient[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true);
  for (const c of cleanups.splice(0).reverse()) await c();
});

function fleet(A: string, B: string): Registry {
  const school = (id: string, name: string, region: string, uplinkDevice: string) => ({
    id,
    name,
    region,
    area: 'urban' as const,
    level: 'primary' as const,
    classes: 2,
    students: 80,
    teachers: 6,
    uplinkDevice,
    uplinkInterface: UPLINK_IF,
  });
  return {
    regions: [
      { id: '330000', name: '浙江省', level: 'province' },
      { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
      { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
      { id: '330108', name: '滨江区', level: 'county', parent: '330100' },
    ],
    schools: [
      school(A, '西湖区文三街小学', '330106', 'gw-a'),
      school(B, '滨江区江南实验学校', '330108', 'gw-b'),
    ],
    classrooms: [
      { id: 'A1', school: A, name: '一(1)班', isClass: true },
      { id: 'A2', school: A, name: '一(2)班', isClass: true },
      { id: 'B1', school: B, name: '一(1)班', isClass: true },
    ],
    devices: [
      { id: 'gw-a', school: A, kind: 'router' },
      { id: 'wb-a1', school: A, classroom: 'A1', kind: 'panel', batch: '2023-西湖-02' },
      { id: 'ops-a2', school: A, classroom: 'A2', kind: 'panel' },
      { id: 'pc-a1', school: A, classroom: 'A1', kind: 'teacher_pc' },
      { id: 'gw-b', school: B, kind: 'router' },
      { id: 'wb-b1', school: B, classroom: 'B1', kind: 'panel', batch: '2022-滨江-01' },
    ],
  };
}

const devUser = (school: string, device: string) => `dev-${school}-${device}`;

/** The credentials: collector, the API's reader, a poller per school, and the devices (B's wb-a1 included). */
function users(A: string, B: string): UserSpec[] {
  const dev = (school: string, device: string): UserSpec => ({
    username: devUser(school, device),
    role: 'device',
    school,
    device,
  });
  return [
    { username: 'collector', role: 'collector' },
    { username: 'api', role: 'reader' },
    { username: 'poller-a', role: 'poller', schools: [A] },
    { username: 'poller-b', role: 'poller', schools: [B] },
    dev(A, 'wb-a1'),
    dev(B, 'wb-a1'),
    dev(A, 'ops-a2'),
    dev(A, 'pc-a1'),
    dev(B, 'wb-b1'),
  ];
}

type Variant = 'embedded' | 'mosquitto';

interface Net {
  url: string;
  secret(username: string): string;
  /** The embedded broker (counters, logs, config), absent for Mosquitto. */
  embedded?: Awaited<ReturnType<typeof startBroker>>;
  dispose(): Promise<void>;
}

async function embeddedNet(list: UserSpec[]): Promise<Net> {
  const b = await startBroker(list, { holdDevicesUntilCollector: true });
  return {
    url: b.url, // fixed: a restart on the same port keeps it
    secret: (u) => b.secrets[u]!,
    embedded: b,
    dispose: () => b.dispose(),
  };
}

/** The ACL file of `list`, in the grammar of deploy/compose/mosquitto/acl: one block per user. */
function aclFor(list: UserSpec[]): string {
  const blocks = list.map((u) => {
    const lines = [`user ${u.username}`];
    switch (u.role) {
      case 'collector':
      case 'reader':
        lines.push('topic read cfm/v1/#');
        break;
      case 'device':
        for (const c of ['status', 'telemetry', 'event'])
          lines.push(`topic write cfm/v1/${u.school}/${u.device}/${c}`);
        break;
      case 'poller':
        for (const s of 'schools' in u ? u.schools : [])
          for (const c of ['status', 'iface', 'event']) lines.push(`topic write cfm/v1/${s}/+/${c}`);
        break;
    }
    return lines.join('\n');
  });
  return `# Written by tests/e2e/adversary.test.ts in the grammar of deploy/compose/mosquitto/acl.\n\n${blocks.join('\n\n')}\n`;
}

/** A real Mosquitto with the shipped mosquitto.conf, adapted as tests/deploy.test.ts does it. */
async function mosquittoNet(list: UserSpec[]): Promise<Net> {
  const dir = mkdtempSync(join(tmp, 'mosquitto-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  mkdirSync(data);
  chmodSync(data, 0o777);
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, '');
  for (const u of list) {
    const r = spawnSync('mosquitto_passwd', ['-b', passwd, u.username, PASSWORD], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mosquitto_passwd ${u.username}: ${r.stderr}`);
  }
  const acl = join(dir, 'acl');
  writeFileSync(acl, aclFor(list));
  const shipped = readFileSync(join(repo, 'deploy/compose/mosquitto/mosquitto.conf'), 'utf8');
  expect(shipped.match(/^listener .*$/gm)).toEqual(['listener 1883']);
  expect(shipped).toMatch(/^use_username_as_clientid true$/m);
  const text = shippedMosquittoConfig({ passwd, acl, data });
  const broker = await new Mosquitto({
    config: (port) => text.replaceAll('{{PORT}}', String(port)),
    dir,
  }).start();
  return {
    url: broker.url,
    secret: () => PASSWORD,
    dispose: async () => {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A class period of 15 minutes that ended a minute or two ago, on every day: today is a teaching day, and the
 * rollup (which counts a period once it has ended) counts it when run now. In the first quarter hour after
 * local midnight, the same period half an hour earlier (yesterday's).
 */
function justEndedPeriod(nowMs: number) {
  const lengthMs = 15 * 60_000;
  let endMs = Math.floor(nowMs / 60_000) * 60_000 - 60_000;
  if (localDate(endMs) !== localDate(endMs - lengthMs)) endMs -= 30 * 60_000;
  const startMs = endMs - lengthMs;
  const hhmm = (ms: number) => new Date(ms + CST_OFFSET_MS).toISOString().slice(11, 16);
  const calendar: CalendarDef = {
    id: 'adversary',
    regions: ['330000'],
    terms: [{ name: '测试学期', start: '2020-01-01', end: '2035-12-31' }],
    periods: Object.fromEntries(WEEKDAYS.map((d) => [d, [`${hhmm(startMs)}-${hhmm(endMs)}`]])),
  };
  return { date: localDate(startMs), startMs, endMs, calendar };
}

interface Stack {
  A: string;
  B: string;
  net: Net;
  database: string;
  registry: RegistryStore;
  storage: Storage;
  collector: Collector;
  collectorLogs: Record<string, unknown>[];
  live: LiveState;
  tokens: TokenStore;
  token: { admin: string; countyA: string; countyB: string };
  period: ReturnType<typeof justEndedPeriod>;
  calendars: Calendars;
  app: Awaited<ReturnType<typeof testApp>>;
  /** Run in reverse by dispose(). */
  cleanups: (() => Promise<void>)[];
  dispose(): Promise<void>;
}

/**
 * Broker, registry, collector, InfluxDB database, live view and API for schools `{prefix}001` (A) and
 * `{prefix}002` (B): ids and database of their own, so nothing retained or stored leaks between stacks.
 */
async function stack(variant: Variant, prefix: string): Promise<Stack> {
  const [A, B] = [`${prefix}001`, `${prefix}002`];
  const dir = join(tmp, prefix);
  mkdirSync(dir);
  const registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: '设备登记.json', data: Buffer.from(JSON.stringify(fleet(A, B))) }]);
  const list = users(A, B);
  const st = { A, B, cleanups: [] as (() => Promise<void>)[] } as unknown as Stack;
  st.dispose = async () => {
    for (const c of st.cleanups.splice(0).reverse()) await c();
  };
  try {
    st.net = variant === 'embedded' ? await embeddedNet(list) : await mosquittoNet(list);
    st.cleanups.push(() => st.net.dispose());
    st.database = `adversary_${prefix}`;
    st.storage = testStorage(influxd.url, { database: st.database }).storage;
    await st.storage.start();
    st.cleanups.push(() => st.storage.stop());
    const { log, lines } = captureLogger('collector');
    st.collectorLogs = lines;
    st.collector = new Collector(
      collectorConfigSchema.parse({
        mqtt: {
          url: st.net.url,
          username: 'collector',
          password: st.net.secret('collector'),
          reconnectMinMs: 50,
          reconnectMaxMs: 300,
        },
        metrics: { port: 0 },
        sweepIntervalMs: 50,
        registryFile: registry.path,
        limits: { maxIfNamesPerDevice: 20 },
      }),
      { log, storage: st.storage },
    );
    st.cleanups.push(() => st.collector.stop()); // the one running then (a test may restart it)
    await st.collector.start();
    await st.collector.ready();
    // The API's live view and alerting: status, iface, events and telemetry, with the reader credential.
    st.live = new LiveState(
      mqttConfigSchema.parse({
        url: st.net.url,
        username: 'api',
        password: st.net.secret('api'),
        reconnectMinMs: 50,
        reconnectMaxMs: 300,
      }),
      silentLogger(),
      true,
    );
    st.cleanups.push(() => st.live.stop());
    await st.live.start();
    await st.live.ready();
    st.registry = registry;
    st.tokens = new TokenStore(join(dir, 'tokens.json')).load();
    st.token = {
      admin: st.tokens.add('市电教馆', 'admin').token,
      countyA: st.tokens.add('西湖区教育局', 'ops', A_PATH).token,
      countyB: st.tokens.add('滨江区教育局', 'ops', B_PATH).token,
    };
    st.period = justEndedPeriod(Date.now());
    st.calendars = new Calendars([st.period.calendar]);
    st.app = await testApp({
      registry,
      calendars: st.calendars,
      tokens: st.tokens,
      storage: st.storage,
      live: st.live,
    });
    st.cleanups.push(() => st.app.close());
    return st;
  } catch (e) {
    await st.dispose();
    throw e;
  }
}

/**
 * The API's rollup job drops the API's caches after a run (api/server.ts); after a rollup run here, outside the
 * app, the checks ask a fresh app, as they would after the job.
 */
async function freshApi(s: Stack): Promise<void> {
  await s.app.close();
  s.app = await testApp({
    registry: s.registry,
    calendars: s.calendars,
    tokens: s.tokens,
    storage: s.storage,
    live: s.live,
  });
}

let seq = 0;
/** A device, poller or reader of the stack's broker (MQTT 3.1.1, no reconnect), ended after the test. */
async function login(s: Stack, username: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectClient(s.net.url, {
    username,
    password: s.net.secret(username),
    clientId: `${username}/${++seq}`, // the embedded broker's binding; Mosquitto uses the username itself
    ...opts,
  });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

/** QoS 1, a status retained: resolves on PUBACK. */
function send<C extends Channel>(
  c: MqttClient,
  school: string,
  device: string,
  channel: C,
  payload: TopicPayloads[C],
) {
  return c.publishAsync(buildTopic({ school, device, channel }), JSON.stringify(payload), {
    qos: 1,
    retain: channel === 'status',
  });
}

/**
 * Messages from EXAMPLES. What a device claims (region, classroom) and whether its display is in use are what
 * these tests are about: none of it unless `extra` says so.
 */
function statusOf(
  state: 'online' | 'offline',
  extra: Partial<TopicPayloads['status']> = {},
): TopicPayloads['status'] {
  return status(state, {
    reason: state === 'online' ? 'birth' : 'shutdown',
    region: undefined,
    classroom: undefined,
    ...extra,
  });
}

/** A v1 teaching display switched on and showing an input: "in use" (by power) for the 班班通 audit. */
const IN_USE = { display: { source: 'pjlink', power: 'on', input: '31' }, inUse: true } as const;

function telemetryOf(
  ts: number,
  n: number,
  extra: Partial<TopicPayloads['telemetry']> = {},
): TopicPayloads['telemetry'] {
  return {
    ...EXAMPLES.telemetry,
    // v1: use is what IN_USE says (a v2 reading's activity would judge it; tests/collector/usage.test.ts).
    v: 1,
    activity: undefined,
    ts,
    seq: n,
    classroom: undefined,
    display: undefined,
    inUse: undefined,
    host: { ...EXAMPLES.telemetry.host!, uptimeS: 3_600 + n, nics: [] },
    ...extra,
  };
}

/** A router's poll of `names`, the uplink among them taking in 2 Mbit/s. */
function ifaceOf(ts: number, n: number, names: string[]): TopicPayloads['iface'] {
  return {
    ...EXAMPLES.iface,
    ts,
    seq: n,
    sysUpTimeTicks: 100 * n,
    ifaces: names.map((name, i) => ({
      ...EXAMPLES.iface.ifaces[0]!,
      index: i + 1,
      name,
      uplink: name === UPLINK_IF,
      inBps: 2e6,
      outBps: 1e6,
    })),
  };
}

/** Waits until the collector has handled `n` messages more than `mark`, and InfluxDB has all it wrote. */
async function settled(s: Stack, mark: number, n: number) {
  await waitFor(() => s.collector.stats().received >= mark + n, { what: `${n} messages at the collector` });
  await s.storage.drain();
}

/** GET as `token`; asserts the status code; the JSON body. */
async function get(s: Stack, url: string, token: string, code = 200) {
  const r = await s.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  expect(r.statusCode, `${url}: ${r.body}`).toBe(code);
  return r.json();
}

type Item = { id: string; school: string };
const ids = (items: Item[]) => items.map((d) => `${d.school}/${d.id}`);
const find = (items: Item[], school: string, id: string) =>
  items.find((d) => d.school === school && d.id === id);
const tagsOf = (r: Record<string, unknown>) => ({
  school: r.school,
  device: r.device,
  region: r.region,
  classroom: r.classroom ?? null,
});

async function metrics(s: Stack): Promise<string> {
  return (await fetch(`http://127.0.0.1:${s.collector.metricsPort}/metrics`)).text();
}
/** The value of one Prometheus series (`name{labels}`) in a scrape; 0 when absent. */
function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** Resolves when the broker closes `c`; fails after 10 s. */
function closedWithin(c: MqttClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    closed(c).finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the broker did not close the connection')), 10_000);
    }),
  ]);
}

describe.each(['embedded', 'mosquitto'] as const)('adversarial devices through the %s broker', (variant) => {
  let s: Stack;
  beforeAll(async () => {
    s = await stack(variant, variant === 'embedded' ? '3133101' : '3133102');
  });
  afterAll(async () => {
    await s?.dispose();
  });

  it("the same device id in two schools: school B's unregistered wb-a1 is unassigned, never school A's — in InfluxDB, the live view, the rollup and the audit", async () => {
    const { A, B, period } = s;
    const mark = s.collector.stats().received;
    const a = await login(s, devUser(A, 'wb-a1'));
    const b = await login(s, devUser(B, 'wb-a1'));
    // In the class period that just ended: A's panel in use in one 5-minute bucket, B's in three. B's runs a
    // copy of A's agent configuration (only the school changed): it announces A's region and classroom too.
    const tA = period.endMs - 30_000;
    const tB = [tA - 600_000, tA - 300_000, tA];
    const claims = { classroom: 'A1', region: A_PATH } as const;
    await send(a, A, 'wb-a1', 'status', statusOf('online', claims));
    await send(a, A, 'wb-a1', 'telemetry', telemetryOf(tA, 1, { classroom: 'A1', ...IN_USE }));
    await send(b, B, 'wb-a1', 'status', statusOf('online', claims));
    for (const [i, ts] of tB.entries())
      await send(b, B, 'wb-a1', 'telemetry', telemetryOf(ts, i, { classroom: 'A1', ...IN_USE }));
    await send(b, B, 'wb-a1', 'status', statusOf('offline', claims));
    await settled(s, mark, 7);
    await waitFor(
      () => s.live.device(A, 'wb-a1')?.state === 'online' && s.live.device(B, 'wb-a1')?.state === 'offline',
      { what: 'both wb-a1 in the live view' },
    );

    // Stored: A's under county A's path and its classroom; B's under `unassigned`, without a classroom.
    const displays = await s.storage.rows(`SELECT * FROM display WHERE device = 'wb-a1' ORDER BY time`);
    expect(displays.filter((r) => r.school === A).map(tagsOf)).toEqual([
      { school: A, device: 'wb-a1', region: A_PATH, classroom: 'A1' },
    ]);
    expect(displays.filter((r) => r.school === B).map((r) => [r.time, ...Object.values(tagsOf(r))])).toEqual(
      tB.map((ts) => [ts, B, 'wb-a1', UNASSIGNED_REGION, null]),
    );
    const presence = await s.storage.rows(`SELECT * FROM presence WHERE device = 'wb-a1' ORDER BY time`);
    const presenceOf = (school: string) =>
      presence.filter((r) => r.school === school).map((r) => [r.region, r.classroom ?? null, r.online]);
    expect(presenceOf(A)).toEqual([[A_PATH, 'A1', 1]]);
    expect(presenceOf(B)).toEqual([
      [UNASSIGNED_REGION, null, 1],
      [UNASSIGNED_REGION, null, 0],
    ]);
    // Each county's dashboard filter: county A sees its own panel's one reading, county B nothing of either.
    const inUse = (filter: string) =>
      s.storage.rows(`SELECT in_use FROM display WHERE ${filter} AND device = 'wb-a1'`);
    expect((await inUse(IN_COUNTY_A)).map((r) => r.time)).toEqual([tA]);
    expect(await inUse(IN_COUNTY_B)).toEqual([]);

    // The API: B's wb-a1 going offline leaves A's online for county A.
    const t = s.token;
    for (const token of [t.countyA, t.admin])
      expect(find((await get(s, `/v1/devices?school=${A}`, token)).items, A, 'wb-a1')).toMatchObject({
        state: 'online',
        classroom: 'A1',
        registryMismatch: [],
      });
    const detail = await get(s, `/v1/schools/${A}`, t.countyA);
    const room = detail.classrooms.find((c: { id: string }) => c.id === 'A1');
    expect(find(room.devices, A, 'wb-a1')).toMatchObject({ state: 'online' });
    expect(detail.devices).toMatchObject({ online: 1, offline: 0 });
    expect(ids((await get(s, '/v1/devices?state=offline', t.countyA)).items)).toEqual([]);
    // B's wb-a1 is unassigned, listed under its school whatever it announces: county B and admin see it, county
    // A does not; it is no registered device of B.
    expect((await get(s, '/v1/devices/unassigned', t.countyA)).items).toEqual([]);
    expect((await get(s, '/v1/devices/unassigned', t.countyB)).items).toEqual([
      {
        id: 'wb-a1',
        school: B,
        schoolKnown: true,
        kind: 'panel',
        state: 'offline',
        sinceMs: expect.any(Number),
        announced: { region: A_PATH, classroom: 'A1', kind: 'panel' },
      },
    ]);
    expect(ids((await get(s, '/v1/devices/unassigned', t.admin)).items)).toEqual([`${B}/wb-a1`]);
    expect(ids((await get(s, '/v1/devices', t.countyB)).items)).toEqual([`${B}/gw-b`, `${B}/wb-b1`]);

    // The rollup of today's period: A's wb-a1 has its own one bucket of use, not B's three (which would also
    // make the period "used": in use for at least half of it).
    const result = await cityRollup(s.storage, () => s.registry.index, s.calendars).day(
      period.date,
      Date.now(),
    );
    expect(result).toMatchObject({ schools: 2, windows: 1 });
    const [usage = []] = await s.storage.query(
      `SELECT online_b, use_b, periods_used FROM usage_day WHERE device = 'wb-a1' GROUP BY school, region`,
    );
    expect(usage.map((x) => [x.tags.school, x.tags.region, ...x.values[0]!.slice(1)])).toEqual([
      [A, A_PATH, 1, 1, 0],
    ]);
    await freshApi(s);
    const auditA = (await get(s, `/v1/audit/devices?period=${period.date}`, t.countyA)).items;
    expect(ids(auditA).sort()).toEqual([`${A}/ops-a2`, `${A}/pc-a1`, `${A}/wb-a1`]);
    expect(find(auditA, A, 'wb-a1')).toMatchObject({
      poweredOnHours: 0.08,
      inUseHours: 0.08,
      daysUsed: 0,
      teachingDays: 1,
      lastUsed: null,
    });
    const auditB = (await get(s, `/v1/audit/devices?period=${period.date}`, t.countyB)).items;
    expect(ids(auditB)).toEqual([`${B}/wb-b1`]);
    expect(find(auditB, B, 'wb-b1')).toMatchObject({ inUseHours: 0, daysUsed: 0, teachingDays: 1 });
    expect(ids((await get(s, `/v1/audit/devices?period=${period.date}`, t.admin)).items)).not.toContain(
      `${B}/wb-a1`,
    );
  });

  it("a registered county-A device announcing county B's region and a county-B classroom is stored and shown under the registry's; county B never sees it", async () => {
    const { A, B } = s;
    const mark = s.collector.stats().received;
    const before = await metrics(s);
    const spoofer = await login(s, devUser(A, 'ops-a2'));
    const honest = await login(s, devUser(B, 'wb-b1'));
    const spoof = { classroom: 'B1', region: B_PATH } as const;
    const now = Date.now();
    await send(spoofer, A, 'ops-a2', 'status', statusOf('online', spoof));
    await send(spoofer, A, 'ops-a2', 'telemetry', telemetryOf(now, 1, { classroom: 'B1', ...IN_USE }));
    await send(spoofer, A, 'ops-a2', 'telemetry', telemetryOf(now + 1, 2, { classroom: 'B1', ...IN_USE }));
    // County B's own panel, reporting honestly: what county B's filter does find.
    await send(honest, B, 'wb-b1', 'status', statusOf('online', { classroom: 'B1', region: B_PATH }));
    await send(honest, B, 'wb-b1', 'telemetry', telemetryOf(now, 1, { classroom: 'B1', ...IN_USE }));
    await settled(s, mark, 5);
    await waitFor(() => s.live.device(A, 'ops-a2') !== undefined && s.live.device(B, 'wb-b1') !== undefined, {
      what: 'both in the live view',
    });

    for (const m of ['host', 'display', 'presence']) {
      const rows = await s.storage.rows(`SELECT * FROM ${m} WHERE device = 'ops-a2'`);
      expect(rows.length, m).toBeGreaterThan(0);
      for (const r of rows)
        expect(tagsOf(r), m).toEqual({ school: A, device: 'ops-a2', region: A_PATH, classroom: 'A2' });
    }
    const mismatches = await s.storage.rows(
      `SELECT * FROM event WHERE type = 'registry_mismatch' AND device = 'ops-a2' ORDER BY time`,
    );
    expect(mismatches.map((e) => [e.subject, e.severity, e.message, e.region, e.classroom]).sort()).toEqual([
      ['classroom', 'warning', 'announces classroom B1, registered A2', A_PATH, 'A2'],
      ['region', 'warning', `announces region ${B_PATH}, registered ${A_PATH}`, A_PATH, 'A2'],
    ]);
    // County B's dashboard filter (and the equality) finds its own panel and nothing of ops-a2.
    const seriesB = (await s.storage.rows(`SHOW SERIES WHERE ${IN_COUNTY_B}`)).map((r) => String(r.key));
    expect(seriesB.some((k) => k.includes(',device=wb-b1,'))).toBe(true);
    expect(seriesB.filter((k) => k.includes(',device=ops-a2,'))).toEqual([]);
    const hostsB = await s.storage.rows(`SELECT * FROM host WHERE region = '${B_PATH}'`);
    expect(hostsB.map((r) => `${r.school}/${r.device}`)).toEqual([`${B}/wb-b1`]);
    const classroomsA = await s.storage.rows(
      `SHOW TAG VALUES FROM display WITH KEY = "classroom" WHERE school = '${A}'`,
    );
    expect(classroomsA.map((r) => r.value)).not.toContain('B1');
    const after = await metrics(s);
    const delta = (field: string) =>
      metric(after, `cfm_collector_registry_mismatch_total{field="${field}"}`) -
      metric(before, `cfm_collector_registry_mismatch_total{field="${field}"}`);
    expect([delta('region'), delta('classroom'), delta('kind')]).toEqual([1, 3, 0]);

    // The API: county A sees the announcement and where it disagrees; the device stays in A's room A2.
    const t = s.token;
    expect(find((await get(s, `/v1/devices?school=${A}`, t.countyA)).items, A, 'ops-a2')).toEqual(
      expect.objectContaining({
        classroom: 'A2',
        kind: 'panel',
        state: 'online',
        announced: { region: B_PATH, classroom: 'B1', kind: 'panel' },
        registryMismatch: ['region', 'classroom'],
      }),
    );
    const detail = await get(s, `/v1/schools/${A}`, t.countyA);
    const a2 = detail.classrooms.find((c: { id: string }) => c.id === 'A2');
    expect(ids(a2.devices)).toEqual([`${A}/ops-a2`]);
    // County B: its own panel, nothing of ops-a2 in its lists; school A does not exist for it.
    expect(ids((await get(s, '/v1/devices', t.countyB)).items)).toEqual([`${B}/gw-b`, `${B}/wb-b1`]);
    expect(find((await get(s, `/v1/devices?school=${B}`, t.countyB)).items, B, 'wb-b1')).toMatchObject({
      state: 'online',
      registryMismatch: [],
    });
    expect(ids((await get(s, '/v1/devices/unassigned', t.countyB)).items)).not.toContain(`${A}/ops-a2`);
    await get(s, `/v1/schools/${A}`, t.countyB, 404);
    await get(s, `/v1/devices?school=${A}`, t.countyB, 404);
  });

  it("a poller bound to school A cannot mark county B's router offline; under its own school the same id is unassigned", async () => {
    const { A, B } = s;
    const mark = s.collector.stats().received;
    const deniedBefore = s.net.embedded?.broker.stats().deniedPublish ?? 0;
    // School B's real gw-b, published by school B's poller.
    const pollerB = await login(s, 'poller-b');
    await send(pollerB, B, 'gw-b', 'status', statusOf('online', { kind: 'router', reason: 'birth' }));
    await waitFor(() => s.live.device(B, 'gw-b')?.state === 'online', { what: "B's gw-b online" });

    const offline = statusOf('offline', { kind: 'router', reason: 'will' });
    let pollerA = await login(s, 'poller-a');
    if (s.net.embedded) {
      // The embedded broker refuses by closing the connection (MQTT 3.1.1 has no per-publish refusal).
      const gone = closedWithin(pollerA);
      pollerA.publish(buildTopic({ school: B, device: 'gw-b', channel: 'status' }), JSON.stringify(offline), {
        qos: 1,
        retain: true,
      });
      await gone;
      expect(s.net.embedded.broker.stats().deniedPublish - deniedBefore).toBe(1);
      expect(
        s.net.embedded.logs.filter((l) => String(l.msg).startsWith('publish refused')).at(-1),
      ).toMatchObject({ why: `school ${B} is not assigned to this poller` });
      pollerA = await login(s, 'poller-a');
    } else {
      // Mosquitto acknowledges a refused QoS 1 publish of MQTT 3.1.1 and drops it; the connection stays.
      await send(pollerA, B, 'gw-b', 'status', offline);
      expect(pollerA.connected).toBe(true);
    }
    // An allowed topic, but gw-b is not school A's device. Published after the refused one on the same
    // credential, it arrives after it would have.
    await send(pollerA, A, 'gw-b', 'status', offline);
    await settled(s, mark, 2);
    await waitFor(() => s.live.device(A, 'gw-b')?.state === 'offline', { what: "A's gw-b in the live view" });

    const presence = await s.storage.rows(`SELECT * FROM presence WHERE device = 'gw-b' ORDER BY time`);
    expect(presence.map((r) => [r.school, r.region, r.classroom ?? null, r.online])).toEqual([
      [B, B_PATH, null, 1],
      [A, UNASSIGNED_REGION, null, 0],
    ]);
    expect(
      await s.storage.rows(`SELECT * FROM presence WHERE ${IN_COUNTY_B} AND device = 'gw-b' AND online = 0`),
    ).toEqual([]);
    expect(s.live.device(B, 'gw-b')).toMatchObject({ state: 'online' });

    const t = s.token;
    expect(find((await get(s, `/v1/devices?school=${B}`, t.countyB)).items, B, 'gw-b')).toMatchObject({
      state: 'online',
    });
    expect(ids((await get(s, '/v1/devices?state=offline', t.countyB)).items)).toEqual([]);
    expect((await get(s, `/v1/schools/${B}`, t.countyB)).devices).toMatchObject({ offline: 0 });
    // School A's unknown gw-b: listed for county A (and admin), not for county B.
    const unassignedA = (await get(s, '/v1/devices/unassigned', t.countyA)).items;
    expect(find(unassignedA, A, 'gw-b')).toMatchObject({
      schoolKnown: true,
      kind: 'router',
      state: 'offline',
    });
    expect(ids((await get(s, '/v1/devices/unassigned', t.countyB)).items)).not.toContain(`${A}/gw-b`);
    expect(ids((await get(s, '/v1/devices/unassigned', t.admin)).items)).toContain(`${A}/gw-b`);
  });

  it('readings dated in 2000, 20 days ago, in 2099 or an hour ahead are rejected and counted; a reading of now is stored; no rolled-up day changes', async () => {
    const { A, period } = s;
    const mark = s.collector.stats().received;
    const before = await metrics(s);
    const c = await login(s, devUser(A, 'pc-a1'));
    const now = Date.now();
    const at = {
      y2000: Date.UTC(2000, 5, 1, 2),
      past20d: period.endMs - 30_000 - 20 * DAY_MS, // in that day's class period
      y2099: Date.UTC(2099, 5, 1, 2),
      ahead1h: now + 3_600_000,
      now,
    };
    const pc = { kind: 'teacher_pc', classroom: 'A1' } as const;
    await send(c, A, 'pc-a1', 'status', statusOf('online', { ...pc, region: A_PATH }));
    let n = 0;
    for (const ts of Object.values(at)) await send(c, A, 'pc-a1', 'telemetry', telemetryOf(ts, ++n, pc));
    await settled(s, mark, 6);

    const all = await s.storage.rows(
      `SELECT * FROM host WHERE school = '${A}' AND device = 'pc-a1' AND time >= '2000-01-01T00:00:00Z' AND time < '2100-01-01T00:00:00Z'`,
    );
    expect(all.map((r) => r.time)).toEqual([at.now]);
    expect(tagsOf(all[0]!)).toEqual({ school: A, device: 'pc-a1', region: A_PATH, classroom: 'A1' });
    expect(await s.storage.rows(`SELECT uptime_s FROM host WHERE time < now() - 14d`)).toEqual([]);
    expect(await s.storage.rows(`SELECT uptime_s FROM host WHERE time > now() + 5m`)).toEqual([]);
    // Nor did they make shards: every shard of this database covers the last weeks.
    const [shards = []] = await s.storage.query('SHOW SHARDS');
    const mine = shards.find((x) => x.name === s.database)!;
    const col = (c: string) => mine.columns.indexOf(c);
    const timeOf = (v: unknown) => (typeof v === 'number' ? v : Date.parse(String(v)));
    expect(mine.values.length).toBeGreaterThan(0);
    for (const v of mine.values) {
      expect(timeOf(v[col('start_time')])).toBeGreaterThan(now - 40 * DAY_MS);
      expect(timeOf(v[col('end_time')])).toBeLessThan(now + 10 * DAY_MS);
    }
    const after = await metrics(s);
    const rejected = (reason: string) =>
      metric(after, `cfm_collector_messages_rejected_total{reason="${reason}"}`) -
      metric(before, `cfm_collector_messages_rejected_total{reason="${reason}"}`);
    expect([rejected('too_old'), rejected('in_future')]).toEqual([2, 2]);

    // Twenty days ago was a teaching day: its rollup and audit show the PC unused, as it was.
    const day20 = dateOf(dayNumber(period.date) - 20);
    await cityRollup(s.storage, () => s.registry.index, s.calendars).day(day20, Date.now());
    const [day = []] = await s.storage.query(
      `SELECT teaching_b, online_b, use_b FROM usage_day WHERE device = 'pc-a1' AND time = ${localMidnightMs(day20)}ms GROUP BY school`,
    );
    expect(
      day.map((x) => [x.tags.school, (x.values[0]![1] as number) > 0, ...x.values[0]!.slice(2)]),
    ).toEqual([[A, true, 0, 0]]);
    await freshApi(s);
    const t = s.token;
    expect(
      find((await get(s, `/v1/audit/devices?period=${day20}`, t.countyA)).items, A, 'pc-a1'),
    ).toMatchObject({ poweredOnHours: 0, inUseHours: 0, daysUsed: 0, teachingDays: 1 });
    expect(ids((await get(s, `/v1/audit/devices?period=${day20}`, t.countyB)).items)).toEqual([
      `${s.B}/wb-b1`,
    ]);
    expect(find((await get(s, `/v1/devices?school=${A}`, t.countyA)).items, A, 'pc-a1')).toMatchObject({
      state: 'online',
    });
    expect(ids((await get(s, '/v1/devices', t.countyB)).items)).not.toContain(`${A}/pc-a1`);
  });

  it("invented interface names: one router's series are bounded, the excess dropped and counted; its uplink is still shown", async () => {
    const { A, B } = s;
    const mark = s.collector.stats().received;
    const dropped = 'cfm_collector_entries_dropped_total{reason="name_limit"}';
    const before = metric(await metrics(s), dropped);
    const poller = await login(s, 'poller-a');
    await send(poller, A, 'gw-a', 'status', statusOf('online', { kind: 'router', reason: 'birth' }));
    // Five polls, each of the real uplink and 30 invented names: 151 names offered to a bound of 20.
    const t0 = Date.now();
    for (let p = 0; p < 5; p++)
      await send(
        poller,
        A,
        'gw-a',
        'iface',
        ifaceOf(t0 - 5 + p, p, [UPLINK_IF, ...Array.from({ length: 30 }, (_, j) => `Tunnel${p}/${j}`)]),
      );
    await settled(s, mark, 6);

    const series = (await s.storage.rows(`SHOW SERIES FROM iface WHERE device = 'gw-a'`)).map((r) =>
      String(r.key),
    );
    expect(series).toHaveLength(20);
    for (const k of series) expect(k).toContain(`region=${A_PATH},school=${A},`);
    const names = await s.storage.rows(
      `SHOW TAG VALUES FROM iface WITH KEY = "ifname" WHERE device = 'gw-a'`,
    );
    expect(names).toHaveLength(20);
    expect(names.map((r) => r.value)).toContain(UPLINK_IF);
    // The rest of each poll is stored: the uplink every time, and what the poll saw.
    expect(
      await s.storage.rows(
        `SELECT count(oper_up) FROM iface WHERE device = 'gw-a' AND ifname = '${UPLINK_IF}'`,
      ),
    ).toMatchObject([{ count: 5 }]);
    expect(
      (await s.storage.rows(`SELECT iface_count FROM snmp WHERE device = 'gw-a'`)).map((r) => r.iface_count),
    ).toEqual([31, 31, 31, 31, 31]);
    // 11 of the first poll's invented names, then all 30 of each later one.
    expect(metric(await metrics(s), dropped) - before).toBe(11 + 4 * 30);

    const t = s.token;
    await waitFor(() => s.live.uplink(A, 'gw-a') !== undefined, { what: "gw-a's uplink in the live view" });
    expect((await get(s, `/v1/schools/${A}`, t.countyA)).uplink).toMatchObject({
      device: 'gw-a',
      ifname: UPLINK_IF,
      inBps: 2e6,
      operStatus: 'up',
    });
    expect(find((await get(s, `/v1/devices?school=${A}`, t.countyA)).items, A, 'gw-a')).toMatchObject({
      state: 'online',
    });
    await get(s, `/v1/schools/${A}`, t.countyB, 404);
    expect((await get(s, `/v1/schools/${B}`, t.countyB)).uplink).toBeNull();
  });
});

/** The embedded broker restarted on `port` with the same configuration (another process may hold it a moment). */
async function restartOn(config: BrokerConfig, port: number, log: Logger): Promise<Broker> {
  for (let attempt = 1; ; attempt++) {
    const broker = new Broker({ ...config, listeners: [{ kind: 'tcp', host: '127.0.0.1', port }] }, { log });
    try {
      await broker.start();
      return broker;
    } catch (e) {
      await broker.stop();
      if (attempt >= 50 || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

// Mosquitto has no per-client rate limit and does not hold devices until a collector is back
// (docs/trust-model.md, deploy/compose/mosquitto/mosquitto.conf): these two run on the embedded broker only.
describe('adversarial devices through the embedded broker only', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await stack('embedded', '3133103');
  });
  afterAll(async () => {
    await s?.dispose();
  });

  it('a status flood is cut off by the broker and bounded by the collector; the API, /healthz and other devices are unaffected', async () => {
    const { A } = s;
    const b = s.net.embedded!;
    const { publishBurst, publishRatePerSec } = b.broker.config;
    const maxChanges = s.collector.config.limits.maxStatusChangesPerMin;
    const before = b.broker.stats();
    const mark = s.collector.stats().received;
    const flapBefore = s.collector.stats().dropped.flap_limit ?? 0;

    // The API's and the collector's health, asked throughout.
    const probes: { api: number; collector: number; ms: number }[] = [];
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const t = performance.now();
        const [api, collector] = await Promise.all([
          s.app.inject({ method: 'GET', url: '/health' }),
          fetch(`http://127.0.0.1:${s.collector.metricsPort}/healthz`),
        ]);
        probes.push({ api: api.statusCode, collector: collector.status, ms: performance.now() - t });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    // Another device of the school reports before, during and after the flood.
    const reporter = await login(s, devUser(A, 'wb-a1'));
    let reading = 0;
    const report = () => send(reporter, A, 'wb-a1', 'telemetry', telemetryOf(Date.now(), ++reading, IN_USE));
    await report();

    const willTs = Date.now() - 1_000;
    // When the live view received the will (its `ts` is the connection's start): the device's offline time.
    let willArrivedMs: number | undefined;
    const onWill = (m: LiveMessage) => {
      if (m.channel === 'status' && m.device === 'ops-a2' && m.message.ts === willTs) willArrivedMs = m.atMs;
    };
    s.live.on('message', onWill);
    cleanups.push(async () => {
      s.live.off('message', onWill);
    });
    const statusTopic = buildTopic({ school: A, device: 'ops-a2', channel: 'status' });
    const flooder = await login(s, devUser(A, 'ops-a2'), {
      will: {
        topic: statusTopic,
        payload: Buffer.from(JSON.stringify(statusOf('offline', { ts: willTs, reason: 'will' }))),
        qos: 1,
        retain: true,
      },
    });
    const t0 = performance.now();
    const gone = closedWithin(flooder);
    for (let i = 0; i < 3_000; i++)
      flooder.publish(statusTopic, JSON.stringify(statusOf(i % 2 === 0 ? 'online' : 'offline')), {
        qos: 0,
        retain: true,
      });
    await report();
    await gone;
    const elapsedS = (performance.now() - t0) / 1_000;
    await waitFor(
      () => willArrivedMs !== undefined && s.live.device(A, 'ops-a2')?.sinceMs === willArrivedMs,
      { what: 'the last will' },
    );
    await report();
    const after = b.broker.stats();
    await settled(s, mark, after.published - before.published);
    probing = false;
    await probe;

    // The broker: cut off once, on the status channel; what passed is the burst and what refilled meanwhile.
    expect(after.rateLimited - before.rateLimited).toBe(1);
    expect(after.rateLimitedStatus - before.rateLimitedStatus).toBe(1);
    expect(after.deniedPublish - before.deniedPublish).toBe(0);
    const passed = after.published - before.published - reading - 1; // minus the readings and the will
    expect(passed).toBeGreaterThanOrEqual(publishBurst);
    expect(passed).toBeLessThanOrEqual(publishBurst + Math.ceil(publishRatePerSec * elapsedS));
    // The collector: presence followed every status (the will last), status_change events are bounded.
    const transitions = passed + (passed % 2 === 1 ? 1 : 0); // the will changes the state after an online
    expect((s.collector.stats().dropped.flap_limit ?? 0) - flapBefore).toBe(transitions - maxChanges);
    const changed = s.collectorLogs.filter((l) => l.msg === 'presence changed' && l.device === 'ops-a2');
    expect(changed).toHaveLength(maxChanges);
    const [events] = await s.storage.rows(
      `SELECT count(message) FROM event WHERE type = 'status_change' AND school = '${A}' AND device = 'ops-a2'`,
    );
    expect(events?.count).toBeGreaterThan(0);
    expect(events?.count).toBeLessThanOrEqual(maxChanges);
    expect(
      await s.storage.rows(`SELECT last(online) FROM presence WHERE school = '${A}' AND device = 'ops-a2'`),
    ).toMatchObject([{ last: 0 }]);
    // The other device's readings all went through, under the registry's tags.
    const hosts = await s.storage.rows(`SELECT * FROM host WHERE school = '${A}' AND device = 'wb-a1'`);
    expect(hosts.map(tagsOf)).toEqual(
      Array.from({ length: reading }, () => ({
        school: A,
        device: 'wb-a1',
        region: A_PATH,
        classroom: 'A1',
      })),
    );
    // Responsive throughout.
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.filter((p) => p.api !== 200 || p.collector !== 200)).toEqual([]);
    expect(Math.max(...probes.map((p) => p.ms))).toBeLessThan(2_000);

    // The API: county A sees the flooder offline (its will) and the reporter online; county B sees neither.
    const t = s.token;
    const list = (await get(s, `/v1/devices?school=${A}`, t.countyA)).items;
    expect(find(list, A, 'ops-a2')).toMatchObject({ state: 'offline', sinceMs: willArrivedMs });
    expect(ids((await get(s, '/v1/devices', t.countyB)).items)).toEqual([`${s.B}/gw-b`, `${s.B}/wb-b1`]);
    expect((await get(s, '/v1/devices/unassigned', t.countyB)).items).toEqual([]);
  });

  it('after a broker restart the live view subscribes first: the agent is refused (CONNACK 3) until the collector is back, and every reading reaches InfluxDB', async () => {
    const { A } = s;
    const b = s.net.embedded!;
    // What the agent produced, seq → ts, as the live view (subscribed throughout but the outage) saw it.
    const tsOfSeq = new Map<number, number>();
    const onMessage = (m: LiveMessage) => {
      if (m.channel === 'telemetry' && m.school === A && m.device === 'pc-a1')
        tsOfSeq.set(m.message.seq, m.message.ts);
    };
    s.live.on('message', onMessage);
    cleanups.push(async () => {
      s.live.off('message', onMessage);
    });
    const agentUser = devUser(A, 'pc-a1');
    const agent = new ClassroomAgent(
      agentConfigSchema.parse({
        school: A,
        device: 'pc-a1',
        classroom: 'A1',
        region: A_PATH,
        kind: 'teacher_pc',
        intervalS: 1,
        mqtt: {
          url: s.net.url,
          username: agentUser,
          password: s.net.secret(agentUser),
          reconnectMinMs: 50,
          reconnectMaxMs: 300,
          keepaliveS: 5,
        },
        spool: { dir: join(tmp, 'spool-pc-a1') },
        replayRatePerSec: 50,
      }),
      { log: captureLogger('agent').log },
    );
    await agent.start();
    cleanups.push(() => agent.stop());
    const seen = (n: number) => Array.from({ length: n }, (_, k) => k).every((k) => tsOfSeq.has(k));
    await waitFor(() => tsOfSeq.size >= 2, { what: 'the first readings', timeoutMs: 20_000 });

    // The broker (in memory: every session and retained message gone) and the collector stop.
    const port = b.broker.ports[0]!;
    await b.broker.stop();
    await s.collector.stop();
    await waitFor(() => !s.live.connected && !agent.connected, { what: 'everyone disconnected' });
    const spooled = agent.stats().spooled;
    await waitFor(() => agent.stats().spooled >= spooled + 2, {
      what: 'readings queued on disk',
      timeoutMs: 20_000,
    });

    // Back on the same port: the live view reconnects and subscribes first; the agent is held back.
    const { log, lines } = captureLogger('broker-restarted');
    const again = await restartOn(b.broker.config, port, log);
    s.cleanups.push(() => again.stop());
    await s.live.ready(20_000);
    const seenWhileHeld = tsOfSeq.size;
    const held = again.stats().heldBack;
    await waitFor(() => again.stats().heldBack >= held + 2, {
      what: 'the agent refused while only the reader is subscribed',
    });
    expect(agent.connected).toBe(false);
    expect(again.stats()).toMatchObject({ authFailures: 0, published: 0 });
    expect(lines.find((l) => l.msg === 'connection refused' && l.username === agentUser)).toMatchObject({
      why: expect.stringMatching(/^no collector has subscribed to school \d+ yet: try again later$/),
    });
    expect(tsOfSeq.size).toBe(seenWhileHeld); // nothing went to the live view alone

    // The collector comes back: the agent is admitted and replays its spool.
    const { log: collectorLog } = captureLogger('collector-restarted');
    s.collector = new Collector(s.collector.config, { log: collectorLog, storage: s.storage });
    await s.collector.start();
    await s.collector.ready();
    await waitFor(() => agent.connected && agent.stats().queued === 0 && seen(agent.stats().readings), {
      what: 'the spool replayed',
      timeoutMs: 30_000,
    });
    const t = s.token;
    expect(find((await get(s, `/v1/devices?school=${A}`, t.countyA)).items, A, 'pc-a1')).toMatchObject({
      state: 'online',
      registryMismatch: [],
    });
    expect(ids((await get(s, '/v1/devices', t.countyB)).items)).not.toContain(`${A}/pc-a1`);
    expect((await get(s, '/health', t.admin)).mqtt).toEqual({ configured: true, connected: true });

    await agent.stop();
    const { readings, replayed, droppedOldest } = agent.stats();
    await waitFor(() => seen(readings), { what: 'the last reading' });
    const expected = Array.from({ length: readings }, (_, k) => tsOfSeq.get(k)!).sort((x, y) => x - y);
    const hostTimes = async () =>
      (await s.storage.rows(`SELECT uptime_s FROM host WHERE school = '${A}' AND device = 'pc-a1'`)).map(
        (r) => r.time as number,
      );
    await waitFor(
      async () => {
        await s.storage.drain();
        return (await hostTimes()).length >= readings;
      },
      { what: 'every reading in InfluxDB' },
    );
    // Every seq the agent produced across the outage is stored, exactly once: no gaps.
    expect((await hostTimes()).sort((x, y) => x - y)).toEqual(expected);
    expect(replayed).toBeGreaterThanOrEqual(2);
    expect(droppedOldest).toBe(0);
    expect(
      (await s.storage.rows(`SELECT * FROM host WHERE ${IN_COUNTY_A} AND device = 'pc-a1'`)).length,
    ).toBe(readings);
  });
});
