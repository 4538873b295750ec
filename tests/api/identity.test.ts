import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { AlertService, alertsConfigSchema } from '../../alerting/service.js';
import { TokenStore } from '../../api/tokens.js';
import { type CalendarDef, Calendars, localMidnightMs } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { mqttConfigSchema } from '../../common/mqtt.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import { EXAMPLES } from '../../contracts/examples.js';
import type { AnyPoint } from '../../contracts/influx.js';
import type { TopicPayloads } from '../../contracts/messages.js';
import type { Registry } from '../../contracts/registry.js';
import { openStream, testApp } from '../helpers/api.js';
import { CITY_CALENDAR, cityRollup } from '../helpers/city.js';
import { Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { statusOf, uplinkOf } from '../helpers/messages.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * (school, device) is the identity (issue #12): device ids are unique only within a school, so a device of
 * school B called `wb-a1` is not school A's `wb-a1` — not in the live view, the device lists, the unassigned
 * list, the live bandwidth stream, the rollups and the usage audit, nor in alerting. Real Mosquitto, real MQTT
 * clients, a real influxd, the API through `inject()` and a loopback listen.
 *
 * School A (西湖区, county A) registers `wb-a1` (a panel in A1), `pc-a1` and its router `gw-a`; school B (滨江区,
 * county B) registers its router `gw-b`. A device of school B called `wb-a1` reports without being registered;
 * later it is registered too.
 */
const A_PATH = '330000/330100/330106';
const B_PATH = '330000/330100/330108';
const school = (id: string, region: string, uplink: string) => ({
  id,
  name: `学校${id}`,
  region,
  area: 'urban' as const,
  level: 'primary' as const,
  classes: 1,
  students: 40,
  teachers: 3,
  uplinkDevice: uplink,
  uplinkInterface: 1,
});
const TWO: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
    { id: '330108', name: '滨江区', level: 'county', parent: '330100' },
  ],
  schools: [school('A', '330106', 'gw-a'), school('B', '330108', 'gw-b')],
  classrooms: [
    { id: 'A1', school: 'A', name: '一(1)班', isClass: true },
    { id: 'B1', school: 'B', name: '一(1)班', isClass: true },
  ],
  devices: [
    { id: 'gw-a', school: 'A', kind: 'router' },
    { id: 'wb-a1', school: 'A', classroom: 'A1', kind: 'panel', batch: '2023-西湖-02' },
    { id: 'pc-a1', school: 'A', classroom: 'A1', kind: 'teacher_pc' },
    { id: 'gw-b', school: 'B', kind: 'router' },
  ],
};
/** A class period all day every day: alert rules with `when: teaching` always count. */
const ALL_DAY: CalendarDef = {
  id: 'all-day',
  regions: ['330000'],
  terms: [{ name: 'test', start: '2020-01-01', end: '2035-12-31' }],
  periods: Object.fromEntries(
    ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'].map((d) => [d, ['00:00-23:59']]),
  ),
};
// In CITY_CALENDAR, 2026-10-08 and 09 are teaching days with two class periods, 08:00-08:40 and 08:50-09:30.
const THU = '2026-10-08';
const FRI = '2026-10-09';
const calendars = new Calendars([CITY_CALENDAR]);

const influxd = new Influxd();
const mosquitto = new Mosquitto();
let dir: string;
let storage: Storage;
let registry: RegistryStore;
let tokens: TokenStore;
let live: LiveState;
let app: Awaited<ReturnType<typeof testApp>>;
let pub: MqttClient;
let port = 0;
const T = { admin: '', countyA: '', countyB: '' };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-identity-'));
  registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'two.yaml', data: Buffer.from(stringify(TWO)) }]);
  tokens = new TokenStore(join(dir, 'tokens.json')).load();
  T.admin = tokens.add('装备中心', 'admin').token;
  T.countyA = tokens.add('西湖区教育局', 'ops', A_PATH).token;
  T.countyB = tokens.add('滨江区教育局', 'ops', B_PATH).token;
  await Promise.all([influxd.start(), mosquitto.start()]);
  storage = testStorage(influxd.url, { database: 'identity' }).storage;
  await storage.start();
  // As the alerting API runs it: status, iface, events and telemetry.
  live = new LiveState(
    mqttConfigSchema.parse({ url: mosquitto.url, clientId: 'api-identity' }),
    silentLogger(),
    true,
  );
  await live.start();
  await live.ready();
  app = await testApp({ registry, calendars, tokens, storage, live });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
  pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'identity-pub' });
});
afterAll(async () => {
  await pub?.endAsync();
  await app?.close();
  await live?.stop();
  await storage?.stop();
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

const json = async (url: string, token: string) => {
  const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  expect(r.statusCode, r.body).toBe(200);
  return r.json();
};
type Item = { id: string; school: string; state?: string; schoolKnown?: boolean };
const ids = (items: Item[]) => items.map((d) => `${d.school}/${d.id}`);
const find = (items: Item[], s: string, id: string) => items.find((d) => d.school === s && d.id === id);

/** A status of `device` under school `s`, announcing only what `extra` does (what it announces is the subject). */
const status = (
  s: string,
  device: string,
  state: 'online' | 'offline',
  extra: Partial<TopicPayloads['status']> = {},
) =>
  pub.publishAsync(
    `cfm/v1/${s}/${device}/status`,
    JSON.stringify(statusOf(state, { kind: 'panel', region: undefined, classroom: undefined, ...extra })),
    { qos: 1, retain: true },
  );
const iface = (s: string, device: string, operStatus: 'up' | 'down', inBps = 1e6) =>
  pub.publishAsync(`cfm/v1/${s}/${device}/iface`, JSON.stringify(uplinkOf(inBps, { operStatus })), {
    qos: 1,
  });

/** An open `/v1/bandwidth/live` stream: its events' data as they arrive. */
async function stream(token: string) {
  const s = await openStream<{ school: string; device: string; inBps: number }>(
    `http://127.0.0.1:${port}/v1/bandwidth/live`,
    token,
  );
  expect(s.status).toBe(200);
  return {
    get events() {
      return s.events.map((e) => e.data);
    },
    close: s.close,
  };
}

describe("school B's unregistered wb-a1 beside school A's registered wb-a1", () => {
  it("B's wb-a1 going offline leaves A's wb-a1 online: live state, /v1/devices, the school detail", async () => {
    await status('A', 'wb-a1', 'online', { region: A_PATH, classroom: 'A1' });
    await waitFor(() => live.device('A', 'wb-a1')?.state === 'online', { timeoutMs: 10_000 });
    await status('B', 'wb-a1', 'offline', { region: B_PATH });
    await waitFor(() => live.device('B', 'wb-a1')?.state === 'offline', { timeoutMs: 10_000 });
    expect(live.device('A', 'wb-a1')).toMatchObject({ school: 'A', device: 'wb-a1', state: 'online' });

    for (const token of [T.countyA, T.admin]) {
      const list = await json('/v1/devices?school=A', token);
      expect(find(list.items, 'A', 'wb-a1')).toMatchObject({ state: 'online', classroom: 'A1' });
    }
    expect((await json('/v1/devices?state=offline', T.countyA)).items).toEqual([]);
    // Registered devices only: B's wb-a1 is not in county B's device list (it is unassigned, below).
    expect(ids((await json('/v1/devices', T.countyB)).items)).toEqual(['B/gw-b']);
    const a = await json('/v1/schools/A', T.countyA);
    expect(a.devices).toEqual({ total: 3, online: 1, offline: 0, unknown: 2 });
    expect(a.classrooms[0].devices.find((d: Item) => d.id === 'wb-a1')).toMatchObject({ state: 'online' });
  });

  it("the unassigned list has B's wb-a1 under school B: county B and admin see it, county A does not", async () => {
    // And a device of a school the registry does not know at all: only an unscoped token sees it.
    await status('Z', 'wb-a1', 'online');
    await waitFor(() => live.device('Z', 'wb-a1') !== undefined, { timeoutMs: 10_000 });

    expect((await json('/v1/devices/unassigned', T.countyA)).items).toEqual([]);
    expect((await json('/v1/devices/unassigned', T.countyB)).items).toEqual([
      {
        id: 'wb-a1',
        school: 'B',
        schoolKnown: true,
        kind: 'panel',
        state: 'offline',
        sinceMs: expect.any(Number),
        announced: { region: B_PATH, classroom: null, kind: 'panel' },
      },
    ]);
    const all = (await json('/v1/devices/unassigned', T.admin)).items;
    expect(ids(all)).toEqual(['B/wb-a1', 'Z/wb-a1']);
    expect(find(all, 'Z', 'wb-a1')).toMatchObject({ schoolKnown: false, state: 'online' });
    // An admin narrowing to a region sees only registered schools there.
    expect(ids((await json(`/v1/devices/unassigned?region=${B_PATH}`, T.admin)).items)).toEqual(['B/wb-a1']);
  });

  it("a poller publishing cfm/v1/A/gw-b/status offline does not touch school B's gw-b for county B", async () => {
    await status('B', 'gw-b', 'online', { kind: 'router' });
    await waitFor(() => live.device('B', 'gw-b')?.state === 'online', { timeoutMs: 10_000 });
    await status('A', 'gw-b', 'offline', { kind: 'router' });
    await waitFor(() => live.device('A', 'gw-b')?.state === 'offline', { timeoutMs: 10_000 });

    expect(find((await json('/v1/devices?school=B', T.countyB)).items, 'B', 'gw-b')).toMatchObject({
      state: 'online',
    });
    expect((await json('/v1/schools/B', T.countyB)).devices).toMatchObject({ online: 1, offline: 0 });
    expect((await json('/v1/devices?state=offline', T.countyB)).items).toEqual([]);
    // It is school A's unknown gw-b: unassigned, for county A.
    expect(ids((await json('/v1/devices/unassigned', T.countyA)).items)).toEqual(['A/gw-b']);
    expect(ids((await json('/v1/devices/unassigned', T.countyB)).items)).toEqual(['B/wb-a1']);
  });

  it('what a registered device announces is kept, and where it disagrees with the registry is shown', async () => {
    // pc-a1 of school A announces county B's region and a classroom of school B.
    await status('A', 'pc-a1', 'online', { kind: 'teacher_pc', region: B_PATH, classroom: 'B1' });
    await waitFor(() => live.device('A', 'pc-a1') !== undefined, { timeoutMs: 10_000 });

    const list = (await json('/v1/devices?school=A', T.countyA)).items;
    expect(find(list, 'A', 'pc-a1')).toMatchObject({
      classroom: 'A1', // the registry's, not the announcement's
      kind: 'teacher_pc',
      announced: { region: B_PATH, classroom: 'B1', kind: 'teacher_pc' },
      registryMismatch: ['region', 'classroom'],
    });
    expect(find(list, 'A', 'wb-a1')).toMatchObject({
      announced: { region: A_PATH, classroom: 'A1', kind: 'panel' },
      registryMismatch: [],
    });
    expect(find(list, 'A', 'gw-a')).toMatchObject({
      announced: null,
      registryMismatch: [],
      state: 'unknown',
    });
    const detail = await json('/v1/schools/A', T.countyA);
    expect(detail.classrooms[0].devices.find((d: Item) => d.id === 'pc-a1').registryMismatch).toEqual([
      'region',
      'classroom',
    ]);
    // The device does not move: county B does not see it.
    expect((await json('/v1/devices', T.countyB)).items.map((d: Item) => d.id)).not.toContain('pc-a1');
  });

  it("the live bandwidth stream and the school's uplink come from the school's own uplink device only", async () => {
    const b = await stream(T.countyB);
    const admin = await stream(T.admin);
    try {
      // School B publishing under A's router id, and B's unregistered wb-a1 marking an uplink: neither is B's.
      await iface('B', 'gw-a', 'up', 666e6);
      await iface('B', 'wb-a1', 'up', 777e6);
      await iface('B', 'gw-b', 'up', 42e6);
      await waitFor(() => b.events.some((e) => e.device === 'gw-b') && admin.events.length > 0, {
        timeoutMs: 10_000,
      });
      await waitFor(() => live.uplink('B', 'wb-a1') !== undefined && live.uplink('B', 'gw-a') !== undefined, {
        timeoutMs: 10_000,
      });
      await iface('A', 'gw-a', 'up', 5e6);
      await waitFor(() => admin.events.some((e) => e.school === 'A'), { timeoutMs: 10_000 });
      expect(b.events.map((e) => `${e.school}/${e.device}:${e.inBps}`)).toEqual(['B/gw-b:42000000']);
      expect(admin.events.map((e) => `${e.school}/${e.device}`)).toEqual(['B/gw-b', 'A/gw-a']);
      expect((await json('/v1/schools/B', T.countyB)).uplink).toMatchObject({ device: 'gw-b', inBps: 42e6 });
      expect((await json('/v1/schools/A', T.countyA)).uplink).toMatchObject({ device: 'gw-a', inBps: 5e6 });
    } finally {
      await b.close();
      await admin.close();
    }
  });

  it("a rollup over both: school A's wb-a1, which never reported, has no use; county A's audit says so", async () => {
    // School B's wb-a1 in use through the first class period of Thursday, stored (as the collector stores an
    // unregistered device) under the `unassigned` region. School A's wb-a1 never reported.
    const pts: AnyPoint[] = [];
    for (let i = 0; i < 8; i++)
      pts.push({
        measurement: 'display',
        tags: { region: 'unassigned', school: 'B', device: 'wb-a1', kind: 'panel' },
        fields: { on: 1, in_use: 1, error_count: 0, power: 'on' },
        ts: localMidnightMs(THU) + 8 * 3_600_000 + i * 300_000 + 150_000,
      });
    // Uplink readings: school B's router, and — under school A — B's router id (a poller of A) and an
    // unregistered device, both saying the uplink is down and full. Only a school's own uplink device counts.
    const uplink = (s: string, device: string, i: number, up: number, util: number): AnyPoint => ({
      measurement: 'iface',
      tags: {
        region: s === 'B' && device === 'gw-b' ? B_PATH : 'unassigned',
        school: s,
        device,
        ifname: 'Gi0/0/1',
        uplink: 'true',
      },
      fields: { util_in_pct: util, util_out_pct: util, oper_up: up, speed_mbps: 1000 },
      ts: localMidnightMs(THU) + 8 * 3_600_000 + i * 300_000 + 150_000,
    });
    for (let i = 0; i < 8; i++)
      pts.push(uplink('B', 'gw-b', i, 1, 10), uplink('A', 'gw-b', i, 0, 99), uplink('A', 'gw-x', i, 0, 99));
    storage.write(pts);
    await storage.flush();
    await cityRollup(storage, () => registry.index, calendars).day(THU, Date.now());

    const [rows = [], up = []] = await storage.query(
      "SELECT use_b, online_b FROM usage_day WHERE device = 'wb-a1' GROUP BY school; SELECT data_b, up_b, over90_b FROM uplink_day GROUP BY school",
    );
    expect(rows.map((s) => [s.tags.school, s.values[0]![1], s.values[0]![2]])).toEqual([['A', 0, 0]]);
    // School A's uplink was not measured (its gw-a never reported); B's was up in all 8 buckets.
    expect(up.map((s) => [s.tags.school, ...s.values[0]!.slice(1)])).toEqual([
      ['A', 0, 0, 0],
      ['B', 8, 8, 0],
    ]);

    const audit = (await json(`/v1/audit/devices?period=${THU}`, T.countyA)).items;
    expect(find(audit, 'A', 'wb-a1')).toMatchObject({
      poweredOnHours: 0,
      inUseHours: 0,
      daysUsed: 0,
      teachingDays: 1,
      lastUsed: null,
    });
    const rooms = (await json(`/v1/attainment/classrooms?period=${THU}`, T.countyA)).items;
    expect(rooms.find((c: Item) => c.id === 'A1')).toMatchObject({ onlineDays: 0, periodsUsedPerWeek: 0 });
    // Unregistered: in nobody's audit.
    expect(ids((await json(`/v1/audit/devices?period=${THU}`, T.admin)).items)).not.toContain('B/wb-a1');
    expect((await json(`/v1/audit/devices?period=${THU}`, T.countyB)).items).toEqual([]);
  });
});

describe('both schools register a wb-a1', () => {
  beforeAll(async () => {
    const more = {
      devices: [{ id: 'wb-a1', school: 'B', classroom: 'B1', kind: 'panel', batch: '2022-滨江-01' }],
    };
    await registry.import([{ name: 'more.yaml', data: Buffer.from(stringify(more)) }]);
  });

  it('each is listed with its own live state; neither is unassigned any more', async () => {
    expect(find((await json('/v1/devices', T.countyA)).items, 'A', 'wb-a1')).toMatchObject({
      state: 'online',
    });
    expect(find((await json('/v1/devices', T.countyB)).items, 'B', 'wb-a1')).toMatchObject({
      state: 'offline',
      classroom: 'B1',
      registryMismatch: [],
    });
    const all = (await json('/v1/devices', T.admin)).items;
    expect(ids(all).filter((k) => k.endsWith('/wb-a1'))).toEqual(['A/wb-a1', 'B/wb-a1']);
    expect(ids((await json('/v1/devices/unassigned', T.countyB)).items)).toEqual([]);
    expect(ids((await json('/v1/devices/unassigned', T.admin)).items)).toEqual(['A/gw-b', 'Z/wb-a1']);
  });

  it("a rollup over both: each school's wb-a1 has its own figures in the rollup and the audit", async () => {
    const pts: AnyPoint[] = [];
    for (let i = 0; i < 8; i++)
      pts.push({
        measurement: 'display',
        tags: { region: B_PATH, school: 'B', classroom: 'B1', device: 'wb-a1', kind: 'panel' },
        fields: { on: 1, in_use: 1, error_count: 0, power: 'on' },
        ts: localMidnightMs(FRI) + 8 * 3_600_000 + i * 300_000 + 150_000,
      });
    storage.write(pts);
    await storage.flush();
    await cityRollup(storage, () => registry.index, calendars).day(FRI, Date.now());

    const [rows = []] = await storage.query(
      `SELECT use_b, periods_used FROM usage_day WHERE device = 'wb-a1' AND time >= ${localMidnightMs(FRI)}ms GROUP BY school`,
    );
    expect(rows.map((s) => [s.tags.school, s.values[0]![1], s.values[0]![2]])).toEqual([
      ['A', 0, 0],
      ['B', 8, 1],
    ]);

    const a = (await json(`/v1/audit/devices?period=${FRI}`, T.countyA)).items;
    expect(find(a, 'A', 'wb-a1')).toMatchObject({ inUseHours: 0, daysUsed: 0, lastUsed: null });
    const b = (await json(`/v1/audit/devices?period=${FRI}`, T.countyB)).items;
    expect(find(b, 'B', 'wb-a1')).toMatchObject({ inUseHours: 0.67, daysUsed: 1, lastUsed: FRI });
    const admin = (await json(`/v1/audit/devices?period=${FRI}`, T.admin)).items;
    expect(find(admin, 'A', 'wb-a1')).toMatchObject({ inUseHours: 0, daysUsed: 0 });
    expect(find(admin, 'B', 'wb-a1')).toMatchObject({ inUseHours: 0.67, daysUsed: 1 });
  });

  it('alerts are keyed per (school, device); only the school’s own uplink device inhibits its rooms', async () => {
    const service = new AlertService(
      alertsConfigSchema.parse({
        stateFile: join(dir, 'alerts.json'),
        groupWaitS: 0,
        tickMs: 100,
        rules: {
          uplink_down: { forS: 60 },
          device_offline: { forS: 60 },
          data_gap: { gapFactor: 3 },
        },
      }),
      {
        log: silentLogger(),
        registry,
        calendars: () => new Calendars([ALL_DAY]),
        live,
      },
    );
    service.start();
    const active = () => [...service.engine.active.values()].filter((a) => a.raw).map((a) => a.key);
    const telemetry = (s: string) =>
      pub.publishAsync(
        `cfm/v1/${s}/wb-a1/telemetry`,
        JSON.stringify({ ...EXAMPLES.telemetry, ts: Date.now(), seq: 1 }),
        { qos: 1 },
      );
    const beat = setInterval(() => void telemetry('B'), 250);
    try {
      // Both wb-a1 come online promising a reading a second; only B's keeps sending.
      await status('A', 'wb-a1', 'online', { heartbeatS: 1 });
      await status('B', 'wb-a1', 'online', { heartbeatS: 1 });
      await telemetry('A');
      await waitFor(() => active().includes('data_gap|A|wb-a1|'), { timeoutMs: 15_000 });
      expect(active()).toEqual(['data_gap|A|wb-a1|']);

      // Another school's router id, an unregistered device, and B's router published under school A: none
      // is school A's uplink, so none makes A's uplink down (which would inhibit A's rooms).
      await iface('A', 'gw-b', 'down');
      await iface('A', 'wb-x', 'down');
      await iface('B', 'gw-a', 'down');
      await iface('A', 'wb-a1', 'down');
      const ticks = service.ticks;
      await waitFor(() => service.ticks > ticks + 3, { timeoutMs: 5_000 });
      expect(active().filter((k) => k.startsWith('uplink_down'))).toEqual([]);
      expect(service.engine.active.get('data_gap|A|wb-a1|')?.inhibitedBy).toBeNull();

      // School A's own router: A's uplink is down, and A's wb-a1 is inhibited by it; B's rooms are not.
      await iface('A', 'gw-a', 'down');
      await waitFor(() => active().includes('uplink_down|A||'), { timeoutMs: 10_000 });
      await waitFor(() => service.engine.active.get('data_gap|A|wb-a1|')?.inhibitedBy != null, {
        timeoutMs: 5_000,
      });
      expect(service.engine.active.get('uplink_down|A||')?.affected).toEqual(['wb-a1']);

      // B's wb-a1 dies: its own alert, not A's.
      clearInterval(beat);
      await status('B', 'wb-a1', 'offline');
      await waitFor(() => active().includes('device_offline|B|wb-a1|'), { timeoutMs: 10_000 });
      expect(active().filter((k) => k.startsWith('device_offline'))).toEqual(['device_offline|B|wb-a1|']);
    } finally {
      clearInterval(beat);
      await service.stop();
    }
  });
});
