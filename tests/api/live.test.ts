import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Poller, pollerConfigSchema } from '../../agents/snmp/poller.js';
import { ApiServer, apiConfigSchema } from '../../api/server.js';
import { roundHalfAway } from '../../common/figures/rounding.js';
import { LiveState, liveLimitsSchema } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { mqttConfigSchema } from '../../common/mqtt.js';
import type { Storage } from '../../common/storage/storage.js';
import { EXAMPLES } from '../../contracts/examples.js';
import type { Registry } from '../../contracts/registry.js';
import { SnmpSim } from '../../dev/snmp-sim.js';
import { openStream } from '../helpers/api.js';
import { CITY_CALENDAR } from '../helpers/city.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { statusOf, uplinkOf } from '../helpers/messages.js';
import { connectClient, startBroker } from '../helpers/mqtt.js';

/**
 * The API's live view against a hostile publisher (issue #12): a poller credential may publish for any device of
 * its schools, so it can invent thousands of device ids. The API process as `npm run api -- run` runs it
 * (ApiServer: registry file, reader credential, /metrics), the embedded broker with its ACL, a real influxd and
 * real mqtt.js clients.
 *
 * School A registers its router `gw-a` (its uplink device) and the panel `wb-a1`; school Z is not registered.
 * The poller `poll-x` (schools A and Z) sends 2,000 statuses of invented devices of A, then statuses and uplink
 * readings of 2,000 invented devices of Z. The live view holds at most 50 unregistered devices per school and 80 in all.
 */
const A = '3301060001';
/** A second school of the county, for the offline time and the live uplink stream (after the flood). */
const B = '3301060002';
const Z = '3301069999';
const A_PATH = '330000/330100/330106';
const PER_SCHOOL = 50;
const TOTAL = 80;
const FLOOD = 2_000;
/** `api.live.staleAfterS` here: short, and longer than the poll interval of the poller below (500 ms). */
const STALE_AFTER_S = 4;
const REGISTRY: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
  ],
  schools: [
    {
      id: A,
      name: '学校A',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 1,
      students: 40,
      teachers: 3,
      uplinkDevice: 'gw-a',
      uplinkInterface: 1,
    },
    {
      id: B,
      name: '学校B',
      region: '330106',
      area: 'rural',
      level: 'primary',
      classes: 6,
      students: 200,
      teachers: 12,
      uplinkDevice: 'gw-b',
      uplinkInterface: 1,
      contractedMbps: 50,
    },
  ],
  classrooms: [
    { id: 'A1', school: A, name: '一(1)班', isClass: true },
    { id: 'B1', school: B, name: '二(3)班', isClass: true },
  ],
  devices: [
    { id: 'gw-a', school: A, kind: 'router' },
    { id: 'wb-a1', school: A, classroom: 'A1', kind: 'panel' },
    { id: 'gw-b', school: B, kind: 'router' },
    { id: 'wb-b1', school: B, classroom: 'B1', kind: 'panel' },
  ],
};

const influxd = new Influxd();
let storage: Storage;
let dir: string;
let broker: Awaited<ReturnType<typeof startBroker>>;
let server: ApiServer;
let logs: Record<string, unknown>[];
const clients: MqttClient[] = [];
/** Live streams a test opened, closed at the end. */
const streams: { close(): Promise<void> }[] = [];
const T = { admin: '', countyA: '' };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-api-live-'));
  writeFileSync(join(dir, 'calendar.yaml'), stringify({ calendars: [CITY_CALENDAR] }));
  writeFileSync(join(dir, 'registry.json'), JSON.stringify(REGISTRY));
  // Nothing here stores readings: the broker must not wait for a collector.
  broker = await startBroker(
    [
      { username: 'api', role: 'reader' },
      { username: 'dev-a1', role: 'device', school: A, device: 'wb-a1' },
      { username: 'dev-b1', role: 'device', school: B, device: 'wb-b1' },
      { username: 'poll-x', role: 'poller', schools: [A, Z] },
      { username: 'poll-b', role: 'poller', schools: [B] },
    ],
    // The poller's burst lets the whole flood through; the broker's own bounds are tested in tests/broker.
    { holdDevicesUntilCollector: false, pollerPublishBurst: 10_000 },
  );
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'live' }).storage;
  await storage.start();
  const captured = captureLogger('api');
  logs = captured.lines;
  server = new ApiServer(
    apiConfigSchema.parse({
      port: 0,
      registryFile: join(dir, 'registry.json'),
      tokensFile: join(dir, 'tokens.json'),
      calendarFile: join(dir, 'calendar.yaml'),
      preloadDays: 0,
      mqtt: { url: broker.url, username: 'api', password: broker.secrets.api },
      live: { maxUnassignedPerSchool: PER_SCHOOL, maxUnassignedDevices: TOTAL, staleAfterS: STALE_AFTER_S },
    }),
    { log: captured.log, storage },
  );
  await server.start();
  await server.live.ready();
  T.admin = server.tokens.add('装备中心', 'admin').token;
  T.countyA = server.tokens.add('西湖区教育局', 'ops', A_PATH).token;
});
afterAll(async () => {
  for (const s of streams) await s.close();
  for (const c of clients) await c.endAsync(true);
  await server?.stop();
  await broker?.dispose();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function connectAs(username: string): Promise<MqttClient> {
  const c = await connectClient(broker.url, {
    username,
    password: broker.secrets[username],
    clientId: `${username}/${clients.length}`,
  });
  clients.push(c);
  return c;
}

async function get(url: string, token: string) {
  const res = await fetch(`${server.url}${url}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { items: Item[] } };
}
type Item = { id: string; school: string; state: string; total?: number };
const ids = (items: Item[]) => items.map((d) => `${d.school}/${d.id}`);
const fake = (prefix: string, i: number) => `${prefix}-${String(i).padStart(4, '0')}`;

describe('the live view under a flood of invented device ids', () => {
  it('holds a bounded number of unregistered devices, evicting the least recently seen; registered ones unaffected', async () => {
    const dev = await connectAs('dev-a1');
    await dev.publishAsync(`cfm/v1/${A}/wb-a1/status`, JSON.stringify(statusOf('online')), {
      qos: 1,
      retain: true,
    });
    await waitFor(() => server.live.device(A, 'wb-a1')?.state === 'online', { what: "wb-a1's status" });

    const poller = await connectAs('poll-x');
    // 2,000 invented devices of school A, each with a status.
    await Promise.all(
      Array.from({ length: FLOOD }, (_, i) =>
        poller.publishAsync(`cfm/v1/${A}/${fake('fake', i)}/status`, JSON.stringify(statusOf('online')), {
          qos: 1,
        }),
      ),
    );
    await waitFor(() => server.live.stats().unassignedEvicted.school === FLOOD - PER_SCHOOL, {
      what: "school A's flood processed",
    });
    expect(server.live.stats()).toMatchObject({
      unassigned: PER_SCHOOL,
      unassignedBySchool: { [A]: PER_SCHOOL },
    });
    // Then 2,000 invented devices of the unregistered school Z, each with a status and an uplink reading; and
    // the school's real uplink device.
    await Promise.all(
      Array.from({ length: FLOOD }, (_, i) => [
        poller.publishAsync(
          `cfm/v1/${Z}/${fake('zz', i)}/status`,
          JSON.stringify(statusOf('online', { kind: 'router' })),
          { qos: 1 },
        ),
        poller.publishAsync(`cfm/v1/${Z}/${fake('zz', i)}/iface`, JSON.stringify(uplinkOf(1e6)), { qos: 1 }),
      ]).flat(),
    );
    await poller.publishAsync(`cfm/v1/${A}/gw-a/iface`, JSON.stringify(uplinkOf(123_456)), { qos: 1 });
    await waitFor(
      () => {
        const s = server.live.stats();
        return s.unassigned + s.unassignedEvicted.school + s.unassignedEvicted.total === 2 * FLOOD;
      },
      { what: "school Z's flood processed" },
    );
    await waitFor(() => server.live.uplink(A, 'gw-a') !== undefined, { what: "gw-a's uplink" });

    // Z's first 30 filled the whole (80); its next 20 took the places of A's 20 least recently seen; from then
    // on Z was full and each newcomer evicted Z's least recently seen.
    expect(server.live.stats()).toEqual({
      devices: 1 + TOTAL, // wb-a1, A's 30 invented devices left, Z's 50
      uplinks: 1 + PER_SCHOOL, // gw-a and Z's 50
      unassigned: TOTAL,
      unassignedBySchool: { [A]: TOTAL - PER_SCHOOL, [Z]: PER_SCHOOL },
      unassignedEvicted: { school: 2 * (FLOOD - PER_SCHOOL), total: 2 * PER_SCHOOL - TOTAL },
    });
    expect(server.live.device(A, fake('fake', FLOOD - 1))).toMatchObject({ state: 'online' });
    expect(server.live.device(A, fake('fake', FLOOD - 31))).toBeUndefined();
    // The same figures for Prometheus.
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/^cfm_api_live_devices 81$/m);
    expect(metrics).toMatch(/^cfm_api_live_unassigned 80$/m);
    expect(metrics).toMatch(/^cfm_api_live_unassigned_evicted\{scope="school"\} 3900$/m);
    expect(metrics).toMatch(/^cfm_api_live_unassigned_evicted\{scope="total"\} 20$/m);
    // 3,920 evictions, one log line (at most one a minute).
    expect(logs.filter((l) => String(l.msg).startsWith('live view: too many devices'))).toMatchObject([
      { part: 'live', level: 40, school: A, scope: 'school', evictedDevice: fake('fake', 0) },
    ]);

    // The registered devices are shown as they reported, and still follow their reports.
    const list = await get(`/v1/devices?school=${A}`, T.countyA);
    expect(list.body.items.map((d) => [d.id, d.state])).toEqual([
      ['gw-a', 'unknown'],
      ['wb-a1', 'online'],
    ]);
    expect((await get(`/v1/schools/${A}`, T.countyA)).body).toMatchObject({
      devices: { total: 2, online: 1, offline: 0, unknown: 1 },
      uplink: { device: 'gw-a', inBps: 123_456 },
    });
    await dev.publishAsync(`cfm/v1/${A}/wb-a1/status`, JSON.stringify(statusOf('offline')), {
      qos: 1,
      retain: true,
    });
    await waitFor(
      async () => (await get(`/v1/devices?school=${A}&state=offline`, T.admin)).body.total === 1,
      {
        what: 'wb-a1 offline in /v1/devices',
      },
    );
  });

  it('GET /v1/devices/unassigned is paginated like /v1/devices', async () => {
    const all = await get('/v1/devices/unassigned?pageSize=5000', T.admin);
    expect(all.status).toBe(200);
    expect(all.body.total).toBe(TOTAL);
    const expected = [
      ...Array.from({ length: TOTAL - PER_SCHOOL }, (_, i) => `${A}/${fake('fake', FLOOD - 30 + i)}`),
      ...Array.from({ length: PER_SCHOOL }, (_, i) => `${Z}/${fake('zz', FLOOD - PER_SCHOOL + i)}`),
    ];
    expect(ids(all.body.items)).toEqual(expected);
    // The default page is 500 long: all of them here.
    expect(ids((await get('/v1/devices/unassigned', T.admin)).body.items)).toEqual(expected);

    const pages = [];
    for (let page = 1; page <= 4; page++) {
      const r = await get(`/v1/devices/unassigned?page=${page}&pageSize=30`, T.admin);
      expect(r.status).toBe(200);
      expect(r.body.total).toBe(TOTAL);
      pages.push(ids(r.body.items));
    }
    expect(pages.map((p) => p.length)).toEqual([30, 30, 20, 0]);
    expect(pages.flat()).toEqual(expected);
    // A scoped token: only the registered school in its scope, counted as such.
    const county = await get('/v1/devices/unassigned?page=2&pageSize=20', T.countyA);
    expect(county.body.total).toBe(TOTAL - PER_SCHOOL);
    expect(ids(county.body.items)).toEqual(expected.slice(20, 30));

    // Bad paging: the API's 400 naming the parameter, exactly as /v1/devices answers it.
    for (const [query, field] of [
      ['page=0', 'page'],
      ['page=abc', 'page'],
      ['page=1.5', 'page'],
      ['pageSize=0', 'pageSize'],
      ['pageSize=5001', 'pageSize'],
      ['pageSize=-3', 'pageSize'],
    ] as const) {
      const bad = await get(`/v1/devices/unassigned?${query}`, T.admin);
      expect(bad.status, query).toBe(400);
      expect(bad.body, query).toMatchObject({ status: 'error', code: 'CFM_API_BAD_REQUEST', field });
      expect(bad.body, query).toEqual((await get(`/v1/devices?${query}`, T.admin)).body);
    }
  });

  it('a device registered since takes no place any more and is listed as registered, with its live state', async () => {
    const newest = fake('fake', FLOOD - 1);
    await server.registry.import([
      {
        name: 'one.yaml',
        data: Buffer.from(stringify({ devices: [{ id: newest, school: A, kind: 'panel' }] })),
      },
    ]);
    expect(server.live.stats()).toMatchObject({
      unassigned: TOTAL - 1,
      unassignedBySchool: { [A]: TOTAL - PER_SCHOOL - 1, [Z]: PER_SCHOOL },
    });
    const unassigned = await get('/v1/devices/unassigned?pageSize=5000', T.admin);
    expect(unassigned.body.total).toBe(TOTAL - 1);
    expect(ids(unassigned.body.items)).not.toContain(`${A}/${newest}`);
    const registered = await get(`/v1/devices?school=${A}`, T.countyA);
    expect(registered.body.items.find((d) => d.id === newest)).toMatchObject({ school: A, state: 'online' });

    // A flood of Z now evicts only Z's own; A's registered devices and remaining places stay.
    const poller = await connectAs('poll-x');
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        poller.publishAsync(`cfm/v1/${Z}/${fake('zy', i)}/iface`, JSON.stringify(uplinkOf(1e6)), { qos: 1 }),
      ),
    );
    await waitFor(() => server.live.stats().unassignedEvicted.school === 2 * (FLOOD - PER_SCHOOL) + 100, {
      what: 'the second flood processed',
    });
    expect(server.live.stats()).toMatchObject({
      unassigned: TOTAL - 1,
      unassignedBySchool: { [A]: TOTAL - PER_SCHOOL - 1, [Z]: PER_SCHOOL },
    });
    expect(server.live.device(A, newest)).toMatchObject({ state: 'online' });
    expect(server.live.device(A, 'wb-a1')).toMatchObject({ state: 'offline' });
  });
});

/** Where school B's panel is, as the live stream's events name it. */
const WB_B1 = {
  school: B,
  device: 'wb-b1',
  kind: 'panel',
  schoolName: '学校B',
  region: A_PATH,
  regionNames: ['浙江省', '杭州市', '西湖区'],
  classroom: 'B1',
  classroomName: '二(3)班',
};

describe('offline time', () => {
  const topic = `cfm/v1/${B}/wb-b1/status`;
  const sinceOf = async () =>
    (await get(`/v1/devices?school=${B}`, T.countyA)).body.items.find((d) => d.id === 'wb-b1') as
      | (Item & { sinceMs: number | null })
      | undefined;

  it('is when the device went offline: the arrival of its last will, not the connect time the will carries; the stream says so with its classroom', async () => {
    const sse = await openStream(`${server.url}/v1/bandwidth/live?devices=true`, T.countyA);
    streams.push(sse);
    // The agent connected a minute ago: its birth and the will it left with the broker both carry that time.
    const connectedAt = Date.now() - 60_000;
    const dev = await connectClient(broker.url, {
      username: 'dev-b1',
      password: broker.secrets['dev-b1'],
      clientId: 'dev-b1/1',
      will: {
        topic,
        payload: Buffer.from(JSON.stringify(statusOf('offline', { ts: connectedAt }))),
        qos: 1,
        retain: true,
      },
    });
    clients.push(dev);
    await dev.publishAsync(topic, JSON.stringify(statusOf('online', { ts: connectedAt })), {
      qos: 1,
      retain: true,
    });
    await waitFor(async () => (await sinceOf())?.state === 'online', { what: "wb-b1's birth" });
    expect(await sinceOf()).toMatchObject({ state: 'online', sinceMs: connectedAt });

    // The fibre is cut: the socket dies without DISCONNECT, and the broker publishes the will.
    const cutAt = Date.now();
    dev.stream.destroy();
    await waitFor(async () => (await sinceOf())?.state === 'offline', { what: "wb-b1's will" });
    const offline = (await sinceOf())!;
    expect(offline.sinceMs).toBeGreaterThanOrEqual(cutAt);
    expect(offline.sinceMs).toBeLessThanOrEqual(Date.now());
    // With `devices=true` the live stream sent both changes, by name.
    const deviceEvents = () => sse.events.filter((e) => e.event === 'device').map((e) => e.data);
    await waitFor(() => deviceEvents().length === 2, { what: 'device events' });
    expect(deviceEvents()).toEqual([
      { ...WB_B1, state: 'online', sinceMs: connectedAt },
      { ...WB_B1, state: 'offline', sinceMs: offline.sinceMs },
    ]);

    // A restarted API gets the will replayed (retained): when it arrived nobody kept, so the time is unknown —
    // not the connect time the will carries.
    const fresh = new LiveState(
      mqttConfigSchema.parse({
        url: broker.url,
        username: 'api',
        password: broker.secrets.api,
        clientId: 'api/fresh',
      }),
      silentLogger(),
      false,
      { registry: () => server.registry.index },
    );
    await fresh.start();
    try {
      await waitFor(() => fresh.device(B, 'wb-b1') !== undefined, { what: 'the retained will' });
      expect(fresh.device(B, 'wb-b1')).toMatchObject({ state: 'offline', sinceMs: null });
    } finally {
      await fresh.stop();
    }
  });

  it('a clean shutdown says when: its own time', async () => {
    const dev = await connectAs('dev-b1');
    const stoppedAt = Date.now() - 5_000;
    await dev.publishAsync(
      topic,
      JSON.stringify(statusOf('offline', { reason: 'shutdown', ts: stoppedAt })),
      { qos: 1, retain: true },
    );
    await waitFor(async () => (await sinceOf())?.sinceMs === stoppedAt, { what: 'the shutdown' });
    expect(await sinceOf()).toMatchObject({ state: 'offline', sinceMs: stoppedAt });
  });
});

describe("a school's uplink on the live stream", () => {
  type Uplink = {
    school: string;
    state: string;
    operStatus: string;
    stateSinceMs: number;
    tsMs: number;
    inBps: number | null;
    outBps: number | null;
  };

  it('a cut is sent as down within seconds of the poll that finds it; a silent poller as stale after the bound', async () => {
    // School B's router as the SNMP poller sees it, polled every 500 ms (its status promises 5 s: 15 s > 4 s).
    const router = await new SnmpSim({
      ifaces: [
        {
          index: 1,
          name: 'GigabitEthernet0/0/1',
          highSpeedMbps: 100,
          operStatus: 1,
          inOctets: 0n,
          outOctets: 0n,
        },
      ],
    }).start();
    const poller = new Poller(
      pollerConfigSchema.parse({
        mqtt: {
          url: broker.url,
          username: 'poll-b',
          password: broker.secrets['poll-b'],
          clientId: 'poll-b/1',
        },
        spool: { dir: join(dir, 'poller-spool') },
        targets: [
          {
            device: 'gw-b',
            school: B,
            address: '127.0.0.1',
            port: router.port,
            community: 'public',
            uplink: 1,
            intervalS: 5,
            timeoutMs: 200,
            retries: 0,
          },
        ],
      }),
      { log: silentLogger(), intervalMs: 500 },
    );
    const sse = await openStream<Uplink>(`${server.url}/v1/bandwidth/live`, T.countyA);
    let traffic: NodeJS.Timeout | undefined;
    const ofB = () => sse.events.filter((e) => e.data.school === B).map((e) => e.data);
    /** The first event of B after the `after` first ones with `state`, once it came. */
    const next = async (state: string, after: number, what: string) => {
      const find = () =>
        ofB()
          .slice(after)
          .find((u) => u.state === state);
      await waitFor(() => find() !== undefined, { what });
      return find()!;
    };
    const schoolB = async () => (await get(`/v1/schools/${B}`, T.countyA)).body.uplink as unknown as Uplink;
    try {
      expect(sse.status).toBe(200);
      await poller.start();
      // Traffic between polls, for a rate; the utilisation is of the school's contracted 50 Mbit/s.
      traffic = setInterval(() => router.advance(1, 1_000_000n, 100_000n), 100);
      await waitFor(() => ofB().some((u) => u.state === 'up' && u.inBps !== null), {
        what: "B's first rate",
      });
      const first = ofB().find((u) => u.inBps !== null)!;
      expect(first).toMatchObject({
        schoolName: '学校B',
        region: A_PATH,
        regionNames: ['浙江省', '杭州市', '西湖区'],
        classroom: null,
        classroomName: null,
        speedMbps: 100,
        capacityMbps: 50,
        capacitySource: 'contract',
        utilisationPct: roundHalfAway((100 * Math.max(first.inBps!, first.outBps!)) / 50e6, 2),
      });
      expect(first.inBps).toBeGreaterThan(0);

      // The interface goes down: the reading says so.
      let seen = ofB().length;
      router.setOperStatus(1, 2);
      expect(await next('down', seen, 'the interface down')).toMatchObject({ operStatus: 'down' });
      seen = ofB().length;
      router.setOperStatus(1, 1);
      await next('up', seen, 'the interface up again');

      // The fibre is cut: the router stops answering. Its last reading said `up`; the stream says down, at once.
      seen = ofB().length;
      const cutAt = Date.now();
      await router.stop();
      const down = await next('down', seen, 'the cut uplink down');
      expect(down).toMatchObject({ operStatus: 'up' });
      expect(down.stateSinceMs - cutAt).toBeLessThan(60_000);
      expect(await schoolB()).toMatchObject({ state: 'down', operStatus: 'up' });

      // Back: the next poll answers.
      seen = ofB().length;
      await router.start();
      await next('up', seen, 'the uplink restored');

      // The poller stops: no reading comes, and after the bound the last one is stale — on the stream and in
      // /v1/schools, though it said `up`.
      seen = ofB().length;
      await poller.stop();
      const stale = await next('stale', seen, 'the reading stale');
      const last = server.live.uplink(B, 'gw-b')!;
      expect(stale).toMatchObject({ operStatus: 'up', stateSinceMs: last.tsMs + STALE_AFTER_S * 1000 });
      expect(await schoolB()).toMatchObject({ state: 'stale', operStatus: 'up', capacitySource: 'contract' });
      // The router's status changed with the cut, but a stream without `devices=true` has uplink events only.
      expect(new Set(sse.events.map((e) => e.event))).toEqual(new Set(['uplink']));
    } finally {
      clearInterval(traffic);
      await sse.close();
      await poller.stop();
      await router.stop();
    }
  });
  it('3 poll intervals make a reading stale when its poller promises a shorter one than the bound', async () => {
    const sse = await openStream<Uplink>(`${server.url}/v1/bandwidth/live`, T.countyA);
    try {
      const poller = await connectAs('poll-x');
      // The poller's status for its router promises a poll every second: stale after 3 s, not 4.
      await poller.publishAsync(
        `cfm/v1/${A}/gw-a/status`,
        JSON.stringify(statusOf('online', { kind: 'router', heartbeatS: 1 })),
        { qos: 1, retain: true },
      );
      await waitFor(() => server.live.device(A, 'gw-a')?.heartbeatS === 1, { what: "gw-a's status" });
      const reading = uplinkOf(2e6);
      await poller.publishAsync(`cfm/v1/${A}/gw-a/iface`, JSON.stringify(reading), { qos: 1 });
      await waitFor(
        () =>
          sse.events.some(
            (e) => e.data.school === A && e.data.tsMs === reading.ts && e.data.state === 'stale',
          ),
        { what: "gw-a's reading stale" },
      );
      expect(server.live.uplink(A, 'gw-a')).toMatchObject({
        state: 'stale',
        stateSinceMs: reading.ts + 3_000,
      });
      // School A has no contracted bandwidth: 2 Mbit/s in, 1 out, of the 1,000 Mbit/s interface.
      expect(sse.events.find((e) => e.data.tsMs === reading.ts && e.data.state === 'up')?.data).toMatchObject(
        {
          schoolName: '学校A',
          inBps: 2e6,
          outBps: 1e6,
          capacityMbps: 1000,
          capacitySource: 'polled',
          utilisationPct: 0.2,
        },
      );
    } finally {
      await sse.close();
    }
  });
});

describe("a school's link quality on /v1/schools (docs/links.md)", () => {
  it("shows the last probe cycle of the school's uplink device; a probe of an invented device adds nothing", async () => {
    const poller = await connectAs('poll-b');
    const probe = (received: number, ts: number) =>
      JSON.stringify({
        ...EXAMPLES.probe,
        ts,
        sent: 20,
        received,
        rttMs: received > 0 ? { min: 30, avg: 42.5, max: 80 } : null,
        jitterMs: received > 1 ? 6 : null,
      });
    const t = Date.now();
    await poller.publishAsync(`cfm/v1/${B}/gw-b/probe`, probe(19, t), { qos: 1 });
    await poller.publishAsync(`cfm/v1/${B}/gw-invented/probe`, probe(0, t), { qos: 1 });
    const link = async () =>
      (await get(`/v1/schools/${B}`, T.countyA)).body.link as Record<string, unknown> | null;
    await waitFor(async () => (await link()) !== null, { what: "school B's probe in the live view" });
    expect(await link()).toMatchObject({
      device: 'gw-b',
      method: 'icmp',
      sent: 20,
      received: 19,
      lossPct: 5,
      rttMs: 42.5,
      jitterMs: 6,
      tsMs: t,
    });
    const listed = (await get('/v1/schools', T.countyA)).body.items as unknown as {
      id: string;
      link: unknown;
    }[];
    expect(listed.find((s) => s.id === B)?.link).toMatchObject({ device: 'gw-b', lossPct: 5 });
    expect(listed.find((s) => s.id === A)?.link).toBeNull();
    // The next cycle, unanswered: loss 100 %, no round trip.
    await poller.publishAsync(`cfm/v1/${B}/gw-b/probe`, probe(0, t + 60_000), { qos: 1 });
    await waitFor(async () => (await link())?.received === 0, { what: 'the unanswered cycle' });
    expect(await link()).toMatchObject({ lossPct: 100, rttMs: null, jitterMs: null });
    // A good cycle, then one older than it (a spool replay) and one with more answers than probes (refused), in
    // that order on one connection: once the refusal is counted, both were handled, and neither replaced it.
    const rejected = server.live.rejected;
    await poller.publishAsync(`cfm/v1/${B}/gw-b/probe`, probe(18, t + 180_000), { qos: 1 });
    await poller.publishAsync(`cfm/v1/${B}/gw-b/probe`, probe(20, t + 30_000), { qos: 1 });
    await poller.publishAsync(
      `cfm/v1/${B}/gw-b/probe`,
      JSON.stringify({ ...JSON.parse(probe(19, t + 240_000)), received: 25 }),
      { qos: 1 },
    );
    await waitFor(() => server.live.rejected === rejected + 1, { what: 'the hostile cycle refused' });
    expect(await link()).toMatchObject({ sent: 20, received: 18, lossPct: 10, tsMs: t + 180_000 });
  });

  it('says how old the cycle is, and marks it stale after 3 of its intervals, at most api.live.staleAfterS', async () => {
    const poller = await connectAs('poll-x');
    const probe = (ts: number) => JSON.stringify({ ...EXAMPLES.probe, ts });
    const link = async () =>
      (await get(`/v1/schools/${A}`, T.countyA)).body.link as unknown as {
        tsMs: number;
        ageS: number;
        staleAfterS: number;
        stale: boolean;
      } | null;
    // The last cycle of a poller that stopped ten minutes ago (replayed from its spool): as old as it says.
    const old = Date.now() - 600_000;
    await poller.publishAsync(`cfm/v1/${A}/gw-a/probe`, probe(old), { qos: 1 });
    await waitFor(async () => (await link()) !== null, { what: "school A's old cycle" });
    const stopped = (await link())!;
    expect(stopped).toMatchObject({ tsMs: old, stale: true, staleAfterS: STALE_AFTER_S });
    expect(stopped.ageS).toBeGreaterThanOrEqual(600);
    expect(stopped.ageS).toBeLessThan(660);
    // Cycles a second apart again (the poller's clock; two gaps, as a shorter interval is taken when it repeats):
    // stale after 3 s (3 intervals, less than the configured 4 s). Whether it is current before then depends on how
    // fast this machine delivers: the injected clock's test below checks that.
    const t = Date.now();
    for (const ts of [t - 2_000, t - 1_000, t])
      await poller.publishAsync(`cfm/v1/${A}/gw-a/probe`, probe(ts), { qos: 1 });
    await waitFor(async () => (await link())?.tsMs === t, { what: 'the current cycle' });
    expect((await link())?.staleAfterS).toBe(3);
    // Then none: it goes stale by itself, with no message.
    await waitFor(async () => (await link())?.stale === true, { what: 'the cycle stale', timeoutMs: 10_000 });
    expect((await link())!.ageS).toBeGreaterThanOrEqual(3);
    const listed = (await get('/v1/schools', T.countyA)).body.items as unknown as {
      id: string;
      link: { stale: boolean } | null;
    }[];
    expect(listed.find((s) => s.id === A)?.link?.stale).toBe(true);
  });
});

describe("a probe cycle's age and interval, by the live view's clock", () => {
  /** A live view of this file's registry fed by hand (`handle`), on a clock the test moves. */
  function view(staleAfterS: number) {
    const clock = { ms: Date.parse('2025-03-03T08:00:00Z') };
    const live = new LiveState(undefined, silentLogger(), false, {
      registry: () => server.registry.index,
      limits: liveLimitsSchema.parse({ staleAfterS }),
      now: () => clock.ms,
    });
    /** A cycle of gw-a that ran at `tsMs` and arrives now. */
    const cycle = (tsMs: number) =>
      live.handle(`cfm/v1/${A}/gw-a/probe`, Buffer.from(JSON.stringify({ ...EXAMPLES.probe, ts: tsMs })));
    const now = () => live.linkNow(live.link(A, 'gw-a')!);
    return { clock, cycle, now };
  }

  it('is current until 3 of its intervals have passed, stale from then', () => {
    const { clock, cycle, now } = view(180);
    const t0 = clock.ms;
    for (const ts of [t0 - 40_000, t0 - 20_000, t0]) cycle(ts);
    expect(now()).toMatchObject({ intervalMs: 20_000, staleAfterS: 60, ageS: 0, stale: false });
    clock.ms = t0 + 59_999;
    expect(now()).toMatchObject({ ageS: 59, stale: false });
    clock.ms = t0 + 60_000;
    expect(now()).toMatchObject({ ageS: 60, stale: true });
  });

  it("takes no restarted poller's early cycle for its interval: a shorter gap counts when it repeats", () => {
    const { clock, cycle, now } = view(600);
    // Cycles every 60 s; the poller restarts 5 s after the last one and runs a cycle as it starts.
    const t0 = clock.ms;
    for (const ts of [t0 - 120_000, t0 - 60_000, t0]) cycle(ts);
    expect(now()).toMatchObject({ intervalMs: 60_000, staleAfterS: 180 });
    clock.ms = t0 + 5_000;
    cycle(clock.ms);
    expect(now()).toMatchObject({ intervalMs: 60_000, staleAfterS: 180 });
    // 15 s on (3 of the 5 s gap) it is not stale; nor just before its next cycle, 60 s after the restart.
    clock.ms = t0 + 20_000;
    expect(now().stale).toBe(false);
    clock.ms = t0 + 64_999;
    expect(now().stale).toBe(false);
    // The next cycle comes a hair early (a timer's jitter): shorter twice in a row, so the longer of the two.
    clock.ms = t0 + 64_990;
    cycle(clock.ms);
    expect(now()).toMatchObject({ intervalMs: 59_990, staleAfterS: 180, stale: false });
    // A changed probes.intervalS (30 s) is taken at its second gap.
    for (const gap of [30_000, 30_000]) {
      clock.ms += gap;
      cycle(clock.ms);
    }
    expect(now()).toMatchObject({ intervalMs: 30_000, staleAfterS: 90 });
    // A longer gap (a skipped cycle) is taken at once: the bound loosens until shorter gaps repeat.
    clock.ms += 60_000;
    cycle(clock.ms);
    expect(now()).toMatchObject({ intervalMs: 60_000, staleAfterS: 180 });
    for (const gap of [30_000, 30_000]) {
      clock.ms += gap;
      cycle(clock.ms);
    }
    expect(now()).toMatchObject({ intervalMs: 30_000, staleAfterS: 90 });
    // A cycle replayed from a spool (older than the one held) changes nothing.
    cycle(clock.ms - 45_000);
    expect(now()).toMatchObject({ intervalMs: 30_000, tsMs: clock.ms });
  });
});
