import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RegistryHealth } from '../../collector/attribution.js';
import { Collector, type CollectorDeps, collectorConfigSchema } from '../../collector/collector.js';
import { writeFileAtomic } from '../../common/json-file.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import { EXAMPLES } from '../../contracts/examples.js';
import { UNASSIGNED_REGION } from '../../contracts/influx.js';
import type { TopicPayloads } from '../../contracts/messages.js';
import type { Registry } from '../../contracts/registry.js';
import { buildTopic, type Channel } from '../../contracts/topics.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * The registry, not the device, decides where a reading belongs; and what one device can cost is bounded.
 * Adversarial and careless devices against a real Mosquitto, the collector and a real influxd; every case asserts
 * what InfluxDB holds afterwards.
 */
const influxd = new Influxd();
const mosquitto = new Mosquitto();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-trust-'));
beforeAll(async () => {
  await Promise.all([influxd.start(), mosquitto.start()]);
});
afterAll(async () => {
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(tmp, { recursive: true, force: true });
});
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const XIHU = '330000/330100/330106';
const YUHANG = '330000/330100/330110';
const DAY_MS = 86_400_000;

let n = 0;
/** School ids of this test: unique, so no retained message or session of another test reaches it. */
const schoolId = (i: number) => `3133${String(n).padStart(3, '0')}${String(i).padStart(3, '0')}`;

/** Two counties of one city; the schools, classrooms and devices given. */
function registry(parts: Partial<Pick<Registry, 'schools' | 'classrooms' | 'devices'>>): Registry {
  return {
    regions: [
      { id: '330000', name: '浙江省', level: 'province' },
      { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
      { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
      { id: '330110', name: '余杭区', level: 'county', parent: '330100' },
    ],
    schools: parts.schools ?? [],
    classrooms: parts.classrooms ?? [],
    devices: parts.devices ?? [],
  };
}

function school(id: string, region: '330106' | '330110'): Registry['schools'][number] {
  return {
    id,
    name: `学校 ${id}`,
    region,
    area: 'urban',
    level: 'primary',
    classes: 12,
    students: 500,
    teachers: 30,
  };
}

async function setup(
  reg: Registry | undefined,
  schools: string[],
  overrides: Record<string, unknown> = {},
  deps: Partial<CollectorDeps> = {},
) {
  const dir = join(tmp, `t${n}`);
  mkdirSync(dir, { recursive: true });
  const registryFile = join(dir, 'registry.json');
  if (reg) writeFileAtomic(registryFile, JSON.stringify(reg));
  const { storage } = testStorage(influxd.url, { database: `trust${n}` });
  await storage.start();
  cleanups.push(() => storage.stop());
  const { log, lines } = captureLogger('collector');
  const collector = new Collector(
    collectorConfigSchema.parse({
      mqtt: { url: mosquitto.url, clientId: `trust-${n}`, reconnectMinMs: 50, reconnectMaxMs: 500 },
      metrics: { port: 0 },
      sweepIntervalMs: 50,
      group: `trust${n}`,
      schools,
      registryFile,
      ...overrides,
    }),
    { log, storage, ...deps },
  );
  await collector.start();
  cleanups.push(() => collector.stop());
  await collector.ready();
  const pub = await mqtt.connectAsync(mosquitto.url, { clientId: `trust-pub-${n}`, protocolVersion: 5 });
  cleanups.push(() => pub.endAsync());
  const base = `http://127.0.0.1:${collector.metricsPort}`;
  return {
    collector,
    storage,
    logs: lines,
    registryFile,
    pub,
    send: <C extends Channel>(
      s: string,
      device: string,
      channel: C,
      payload: TopicPayloads[C],
      retain = false,
    ) =>
      pub.publishAsync(buildTopic({ school: s, device, channel }), JSON.stringify(payload), {
        qos: 1,
        retain,
      }),
    metrics: async () => (await fetch(`${base}/metrics`)).text(),
    health: async () => {
      const r = await fetch(`${base}/healthz`);
      return {
        code: r.status,
        body: (await r.json()) as { status: string; mqtt: string; registry: RegistryHealth },
      };
    },
  };
}

/** A collector for school `school` with one registered panel, ops-1 in classroom c0701. */
function onePanel(school_: string) {
  return setup(
    registry({
      schools: [school(school_, '330106')],
      classrooms: [{ id: 'c0701', school: school_, name: '七年级1班', isClass: true }],
      devices: [{ id: 'ops-1', school: school_, classroom: 'c0701', kind: 'panel' }],
    }),
    [school_],
  );
}

/** Waits until the collector has handled `count` messages and InfluxDB has everything written so far. */
async function settled(c: { collector: Collector; storage: Storage }, count: number) {
  await waitFor(() => c.collector.stats().received >= count, { what: `${count} messages handled` });
  await c.storage.drain();
}

function telemetry(ts: number, uptimeS: number, extra: Partial<TopicPayloads['telemetry']> = {}) {
  return {
    ...EXAMPLES.telemetry,
    ts,
    seq: uptimeS,
    host: { ...EXAMPLES.telemetry.host!, uptimeS },
    ...extra,
  } satisfies TopicPayloads['telemetry'];
}

function status(ts: number, extra: Partial<TopicPayloads['status']> = {}): TopicPayloads['status'] {
  return { ...EXAMPLES.status, ts, ...extra };
}

/** One interface entry of an iface reading, not the uplink: the example's, under another index and name. */
const iface = (index: number, name: string) => ({ ...EXAMPLES.iface.ifaces[0]!, index, name, uplink: false });

const tagsOf = (r: Record<string, unknown>) => ({
  school: r.school,
  device: r.device,
  region: r.region,
  classroom: r.classroom ?? null,
  kind: r.kind,
});

describe('tags come from the registry', () => {
  it('the same device id in two schools is two devices; an unregistered one is stored as unassigned', async () => {
    n++;
    const [A, B, C] = [schoolId(1), schoolId(2), schoolId(3)];
    const c = await setup(
      registry({
        schools: [school(A, '330106'), school(B, '330110')],
        classrooms: [
          { id: 'a-101', school: A, name: '一年级1班', isClass: true },
          { id: 'b-201', school: B, name: '二年级1班', isClass: true },
        ],
        devices: [
          { id: 'wb-a1', school: A, classroom: 'a-101', kind: 'panel' },
          { id: 'wb-a1', school: B, classroom: 'b-201', kind: 'whiteboard' },
        ],
      }),
      [A, B, C],
    );
    const now = Date.now();
    // Each announces school A's classroom and county: only A's own device is stored there.
    const claims = { classroom: 'a-101', kind: 'panel' } as const;
    await c.send(A, 'wb-a1', 'status', status(now, { ...claims, region: XIHU }), true);
    await c.send(A, 'wb-a1', 'telemetry', telemetry(now, 1, claims));
    await c.send(B, 'wb-a1', 'telemetry', telemetry(now, 2, { classroom: 'b-201', kind: 'whiteboard' }));
    await c.send(C, 'wb-a1', 'status', status(now, { ...claims, region: XIHU }), true); // unknown school
    await c.send(C, 'wb-a1', 'telemetry', telemetry(now, 3, claims));
    await c.send(A, 'wb-zz', 'telemetry', telemetry(now, 4, claims)); // unknown device of a known school
    await settled(c, 6);

    const hosts = await c.storage.rows('SELECT * FROM host ORDER BY time');
    expect(hosts.sort((x, y) => (x.uptime_s as number) - (y.uptime_s as number)).map(tagsOf)).toEqual([
      { school: A, device: 'wb-a1', region: XIHU, classroom: 'a-101', kind: 'panel' },
      { school: B, device: 'wb-a1', region: YUHANG, classroom: 'b-201', kind: 'whiteboard' },
      { school: C, device: 'wb-a1', region: UNASSIGNED_REGION, classroom: null, kind: 'panel' },
      { school: A, device: 'wb-zz', region: UNASSIGNED_REGION, classroom: null, kind: 'panel' },
    ]);
    // Presence is per (school, device), with the same tags.
    const presence = await c.storage.rows('SELECT * FROM presence');
    expect(
      presence.map(tagsOf).sort((x, y) => `${x.school}${x.device}`.localeCompare(`${y.school}${y.device}`)),
    ).toEqual([
      { school: A, device: 'wb-a1', region: XIHU, classroom: 'a-101', kind: 'panel' },
      { school: A, device: 'wb-zz', region: UNASSIGNED_REGION, classroom: null, kind: 'panel' },
      { school: B, device: 'wb-a1', region: YUHANG, classroom: 'b-201', kind: 'whiteboard' },
      { school: C, device: 'wb-a1', region: UNASSIGNED_REGION, classroom: null, kind: 'panel' },
    ]);
    // What county 330106's filter sees: school A's own device, nothing else.
    const xihu = await c.storage.rows(
      `SELECT uptime_s FROM host WHERE region =~ /^330000\\/330100\\/330106(\\/|$)/`,
    );
    expect(xihu.map((r) => r.uptime_s)).toEqual([1]);
    expect(c.collector.stats()).toMatchObject({ accepted: 6, unassigned: 3, mismatches: {} });
    const metrics = await c.metrics();
    expect(metrics).toContain('cfm_collector_unassigned_messages_total{cause="unknown_school"} 2');
    expect(metrics).toContain('cfm_collector_unassigned_messages_total{cause="unknown_device"} 1');
    expect(metrics).toContain('cfm_collector_unassigned_devices 2');
  });

  it("a registered device announcing another county's region and classroom is stored under the registry's; the mismatch is counted and written once per value", async () => {
    n++;
    const [A, B] = [schoolId(1), schoolId(2)];
    const c = await setup(
      registry({
        schools: [school(A, '330106'), school(B, '330110')],
        classrooms: [
          { id: 'a-101', school: A, name: '一年级1班', isClass: true },
          { id: 'b-201', school: B, name: '二年级1班', isClass: true },
        ],
        devices: [{ id: 'ops-1', school: A, classroom: 'a-101', kind: 'panel' }],
      }),
      [A, B],
    );
    const now = Date.now();
    const spoof = { classroom: 'b-201', kind: 'panel' } as const;
    await c.send(A, 'ops-1', 'status', status(now, { ...spoof, region: YUHANG }), true);
    for (let i = 1; i <= 3; i++) await c.send(A, 'ops-1', 'telemetry', telemetry(now + i, i, spoof));
    await c.send(A, 'ops-1', 'telemetry', telemetry(now + 4, 4, { classroom: 'b-202', kind: 'panel' }));
    await c.send(A, 'ops-1', 'event', { ...EXAMPLES.event, kind: 'panel', ts: now + 5 });
    await settled(c, 6);

    // Every point of the device is under the registry's county and classroom; county 330110 sees nothing.
    for (const m of ['host', 'nic', 'display', 'presence', 'event']) {
      const rows = await c.storage.rows(`SELECT * FROM ${m}`);
      expect(rows.length, m).toBeGreaterThan(0);
      for (const r of rows)
        expect(tagsOf(r), m).toEqual({
          school: A,
          device: 'ops-1',
          region: XIHU,
          classroom: 'a-101',
          kind: 'panel',
        });
    }
    expect(await c.storage.rows('SHOW TAG VALUES WITH KEY = "region"')).toEqual(
      expect.not.arrayContaining([expect.objectContaining({ value: YUHANG })]),
    );
    // Visible: one event per distinct announced value, naming both values.
    const mismatches = await c.storage.rows(
      "SELECT * FROM event WHERE type = 'registry_mismatch' ORDER BY time",
    );
    expect(mismatches.map((e) => [e.subject, e.severity, e.message])).toEqual(
      expect.arrayContaining([
        ['region', 'warning', `announces region ${YUHANG}, registered ${XIHU}`],
        ['classroom', 'warning', 'announces classroom b-201, registered a-101'],
        ['classroom', 'warning', 'announces classroom b-202, registered a-101'],
      ]),
    );
    expect(mismatches).toHaveLength(3);
    expect(JSON.parse(mismatches.find((e) => e.subject === 'region')!.details as string)).toEqual({
      field: 'region',
      announced: YUHANG,
      registered: XIHU,
    });
    // Counted per message: the status and four readings announce a foreign classroom.
    expect(c.collector.stats().mismatches).toEqual({ region: 1, classroom: 5 });
    const metrics = await c.metrics();
    expect(metrics).toContain('cfm_collector_registry_mismatch_total{field="classroom"} 5');
    expect(metrics).toContain('cfm_collector_registry_mismatch_total{field="region"} 1');
  });

  it('picks up a registry import within seconds, keeps the last good registry when the file breaks, and says so on /healthz', async () => {
    n++;
    const A = schoolId(1);
    // No registry file yet: everything is unassigned, and the collector says so.
    const c = await setup(undefined, [A]);
    expect(c.logs.some((l) => l.level === 40 && /no registry file/.test(String(l.msg)))).toBe(true);
    expect(await c.health()).toMatchObject({
      code: 200,
      body: { status: 'degraded', registry: { missing: true, devices: 0 } },
    });
    let i = 0;
    let ts = 0;
    const send = () => {
      ts = Math.max(Date.now(), ts + 1); // one point each: never two on one timestamp
      return c.send(A, 'ops-1', 'telemetry', telemetry(ts, ++i, { kind: 'panel' }));
    };
    await send();
    await settled(c, 1);
    expect((await c.storage.rows('SELECT * FROM host')).map((r) => r.region)).toEqual([UNASSIGNED_REGION]);

    // The API's import (another process in production) writes the file atomically.
    const fleet = registry({
      schools: [school(A, '330106')],
      classrooms: [{ id: 'a-101', school: A, name: '一年级1班', isClass: true }],
      devices: [{ id: 'ops-1', school: A, classroom: 'a-101', kind: 'panel' }],
    });
    await new RegistryStore(c.registryFile).import([
      { name: 'fleet.json', data: Buffer.from(JSON.stringify(fleet)) },
    ]);
    const importedAt = Date.now(); // the file is in place (the import's worker process took its own time)
    let attributedAt = 0;
    await waitFor(
      async () => {
        await send();
        await c.storage.drain();
        const rows = await c.storage.rows(`SELECT uptime_s FROM host WHERE region = '${XIHU}'`);
        if (rows.length) attributedAt = Date.now();
        return rows.length > 0;
      },
      { what: 'readings under the imported region', timeoutMs: 10_000 },
    );
    expect(attributedAt - importedAt).toBeLessThan(3_000); // registryCheckMs (1 s) plus delivery
    expect(await c.health()).toMatchObject({
      code: 200,
      body: { status: 'ok', registry: { missing: false, error: null, devices: 1 } },
    });

    // A broken file (a bad copy on shared storage): the last good registry stays in use, logged once.
    writeFileAtomic(c.registryFile, '{"regions": [');
    await waitFor(async () => (await c.health()).body.registry.error !== null, {
      what: 'the broken file noticed',
    });
    const before = i;
    for (let k = 0; k < 5; k++) await send();
    await waitFor(() => c.collector.stats().accepted >= i, { what: 'readings after the breakage' });
    await c.storage.drain();
    const after = await c.storage.rows(
      `SELECT uptime_s, region, classroom FROM host WHERE uptime_s > ${before}`,
    );
    expect(after).toHaveLength(5);
    for (const r of after) expect(r).toMatchObject({ region: XIHU, classroom: 'a-101' });
    const h = await c.health();
    expect(h).toMatchObject({ code: 200, body: { status: 'degraded', registry: { devices: 1 } } });
    expect(h.body.registry.error).toMatch(/not JSON/);
    expect(await c.metrics()).toContain('cfm_collector_registry_error 1');
    expect(c.logs.filter((l) => /could not be re-read/.test(String(l.msg)))).toHaveLength(1);

    // Repaired: healthy again.
    writeFileAtomic(c.registryFile, JSON.stringify(fleet));
    await waitFor(async () => (await c.health()).body.status === 'ok', { what: 'healthy again' });
    expect(await c.metrics()).toContain('cfm_collector_registry_error 0');
  });

  it('refuses to start on a registry file it cannot read, naming the file', async () => {
    n++;
    const dir = join(tmp, `t${n}`);
    mkdirSync(dir, { recursive: true });
    const registryFile = join(dir, 'registry.json');
    writeFileAtomic(registryFile, '{"devices": 3}');
    const { storage } = testStorage(influxd.url, { database: `trust${n}` });
    const collector = new Collector(
      collectorConfigSchema.parse({ mqtt: { url: mosquitto.url }, metrics: { port: 0 }, registryFile }),
      { log: captureLogger('collector').log, storage },
    );
    await expect(collector.start()).rejects.toThrow(
      /collector\.registryFile: registry .*registry\.json: devices/,
    );
    await collector.stop();
  });
});

describe('bounds per device', () => {
  it('rejects readings older than maxPastS or dated in the future, and stores a replay within maxPastS', async () => {
    n++;
    const A = schoolId(1);
    const c = await onePanel(A);
    const now = Date.now();
    const at = {
      past15d: now - 15 * DAY_MS, // beyond the default 14 days
      past13d: now - 13 * DAY_MS, // a spool replay after a long outage: stored
      past1h: now - 3_600_000,
      ahead1m: now + 60_000, // clock drift within 5 min: stored
      ahead10m: now + 600_000,
      y2099: Date.UTC(2099, 0, 1),
    };
    await c.send(A, 'ops-1', 'status', status(now), true);
    let k = 0;
    for (const ts of Object.values(at)) await c.send(A, 'ops-1', 'telemetry', telemetry(ts, ++k));
    await c.send(A, 'ops-1', 'event', { ...EXAMPLES.event, kind: 'panel', ts: now - 30 * DAY_MS });
    await c.send(A, 'ops-1', 'status', status(now + 3_600_000)); // a birth from a clock an hour ahead
    // A last will is composed when the connection began, possibly weeks ago: it still counts.
    await c.send(A, 'ops-1', 'status', status(now - 30 * DAY_MS, { state: 'offline', reason: 'will' }), true);
    await settled(c, 10);

    const hosts = await c.storage.rows('SELECT uptime_s FROM host ORDER BY time');
    expect(hosts.map((r) => r.time)).toEqual([at.past13d, at.past1h, at.ahead1m]);
    expect(await c.storage.rows("SELECT * FROM event WHERE type = 'fault'")).toEqual([]);
    expect(c.collector.stats().rejected).toEqual({ too_old: 2, in_future: 3 });
    expect(c.collector.presence.get(A, 'ops-1')).toMatchObject({ online: false });
    const metrics = await c.metrics();
    expect(metrics).toContain('cfm_collector_messages_rejected_total{reason="too_old"} 2');
    expect(metrics).toContain('cfm_collector_messages_rejected_total{reason="in_future"} 3');
    // Logged once per device and reason, not per message.
    expect(c.logs.filter((l) => /\(too_old\)/.test(String(l.msg)))).toHaveLength(1);
    expect(c.logs.filter((l) => /\(in_future\)/.test(String(l.msg)))).toHaveLength(1);
  });

  it('a NIC counter of 20 non-digits is rejected as invalid, not thrown out of validation; the next reading is stored', async () => {
    n++;
    const A = schoolId(1);
    const c = await onePanel(A);
    const now = Date.now();
    const good = telemetry(now - 1_000, 1);
    const nic = good.host!.nics[0]!;
    for (const rxBytes of ['x'.repeat(20), `${'9'.repeat(19)}x`, '-'.repeat(40)])
      await c.send(A, 'ops-1', 'telemetry', {
        ...good,
        host: { ...good.host!, nics: [{ ...nic, rxBytes }] },
      });
    await c.send(A, 'ops-1', 'telemetry', good);
    await settled(c, 4);
    expect(c.collector.stats().rejected).toEqual({ invalid: 3 });
    expect(c.collector.stats().accepted).toBe(1);
    await waitFor(async () => (await c.storage.rows('SELECT uptime_s FROM host')).length === 1, {
      what: 'the good reading stored',
    });
    // The example's counter is above 2^63-1: stored as its two's complement (common/storage/line-protocol.ts).
    expect((await c.storage.rows('SELECT rx_bytes FROM nic')).map((r) => String(r.rx_bytes))).toEqual([
      String(BigInt(nic.rxBytes) - (1n << 64n)),
    ]);
  });

  it('bounds distinct NIC names, interface names and event subjects per device: the excess is dropped, the rest stored', async () => {
    n++;
    const A = schoolId(1);
    const c = await setup(
      registry({
        schools: [school(A, '330106')],
        classrooms: [{ id: 'c0701', school: A, name: '七年级1班', isClass: true }],
        devices: [
          { id: 'ops-1', school: A, classroom: 'c0701', kind: 'panel' },
          { id: 'sw-1', school: A, kind: 'switch' },
        ],
      }),
      [A],
    );
    const now = Date.now();
    // 20 readings of 32 invented NIC names each (the most one message may carry): 640 names offered.
    const nic = (name: string) => ({ ...EXAMPLES.telemetry.host!.nics[0]!, name });
    for (let i = 0; i < 20; i++)
      await c.send(
        A,
        'ops-1',
        'telemetry',
        telemetry(now - 20_000 + i, i, {
          host: {
            ...EXAMPLES.telemetry.host!,
            uptimeS: i,
            nics: Array.from({ length: 32 }, (_, j) => nic(`eth-${i}-${j}`)),
          },
        }),
      );
    // The first names again later: still stored.
    await c.send(
      A,
      'ops-1',
      'telemetry',
      telemetry(now, 99, {
        host: {
          ...EXAMPLES.telemetry.host!,
          uptimeS: 99,
          nics: [nic('eth-0-0'), nic('eth-0-15'), nic('eth-9-9')],
        },
      }),
    );
    // Three polls of 700 invented interface names each: 2,100 names offered to a bound of 1,024.
    for (let p = 0; p < 3; p++)
      await c.send(A, 'sw-1', 'iface', {
        ...EXAMPLES.iface,
        kind: 'switch',
        ts: now - 3 + p,
        ifaces: Array.from({ length: 700 }, (_, j) => iface(j + 1, `Gi${p}/0/${j}`)),
      });
    // 70 events with invented subjects (a tag too): 64 stored.
    for (let e = 0; e < 70; e++)
      await c.send(A, 'ops-1', 'event', {
        ...EXAMPLES.event,
        kind: 'panel',
        subject: `part${e}`,
        ts: now - 100 + e,
      });
    await settled(c, 20 + 1 + 3 + 70);

    const nicNames = await c.storage.rows('SHOW TAG VALUES FROM nic WITH KEY = "nic"');
    expect(nicNames).toHaveLength(16);
    expect(nicNames.map((r) => r.value)).toEqual(expect.arrayContaining(['eth-0-0', 'eth-0-15']));
    expect(await c.storage.rows('SHOW SERIES FROM nic')).toHaveLength(16);
    // The rest of each reading is stored: every host point, and the known names of the late reading.
    expect(await c.storage.rows('SELECT count(uptime_s) FROM host')).toMatchObject([{ count: 21 }]);
    expect(
      (await c.storage.rows(`SELECT rx_bps FROM nic WHERE time = ${BigInt(now) * 1_000_000n}`)).length,
    ).toBe(2);
    expect(await c.storage.rows('SHOW TAG VALUES FROM iface WITH KEY = "ifname"')).toHaveLength(1_024);
    expect(await c.storage.rows('SELECT count(poll_ms) FROM snmp')).toMatchObject([{ count: 3 }]);
    // iface_count says what the poll saw.
    expect((await c.storage.rows('SELECT iface_count FROM snmp')).map((r) => r.iface_count)).toEqual([
      700, 700, 700,
    ]);
    expect(await c.storage.rows('SHOW TAG VALUES FROM event WITH KEY = "subject"')).toHaveLength(64);

    const dropped = 20 * 32 - 16 + 1 + (3 * 700 - 1_024) + (70 - 64);
    expect(c.collector.stats().dropped).toEqual({ name_limit: dropped });
    expect(await c.metrics()).toContain(
      `cfm_collector_entries_dropped_total{reason="name_limit"} ${dropped}`,
    );
    // One log line per device and tag.
    expect(c.logs.filter((l) => /name_limit/.test(String(l.msg))).map((l) => [l.device, l.tag])).toEqual([
      ['ops-1', 'nic'],
      ['sw-1', 'ifname'],
      ['ops-1', 'subject'],
    ]);
  });

  it("interface readings are a network device's: a registered panel's are rejected; an unregistered device's names share one small budget until it is registered", async () => {
    n++;
    const A = schoolId(1);
    const fleet = (devices: Registry['devices']) =>
      registry({
        schools: [school(A, '330106')],
        classrooms: [{ id: 'c0701', school: A, name: '七年级1班', isClass: true }],
        devices,
      });
    const c = await setup(
      fleet([
        { id: 'ops-1', school: A, classroom: 'c0701', kind: 'panel' },
        { id: 'gw-1', school: A, kind: 'router' },
      ]),
      [A],
    );
    const now = Date.now();
    const poll = (ts: number, names: string[]) => ({
      ...EXAMPLES.iface,
      kind: 'router' as const,
      ts,
      ifaces: names.map((name, j) => iface(j + 1, name)),
    });
    const names = (p: string, k: number) => Array.from({ length: k }, (_, j) => `${p}${j}`);
    // A poller credential (or the panel itself) claiming interfaces for a registered panel: rejected whole.
    await c.send(A, 'ops-1', 'iface', poll(now - 10, names('Gi0/', 500)));
    await c.send(A, 'ops-1', 'iface', poll(now - 9, names('Gi1/', 500)));
    // The registered router's interfaces are stored.
    await c.send(A, 'gw-1', 'iface', poll(now - 8, names('ge-0/', 40)));
    // An invented device: 300 names offered, 16 kept (maxNamesPerUnassignedDevice), across tags.
    await c.send(A, 'sw-x', 'iface', poll(now - 7, names('x', 300)));
    await c.send(A, 'sw-x', 'event', { ...EXAMPLES.event, kind: 'switch', subject: 'psu', ts: now - 6 });
    await settled(c, 5);

    const ifnames = async (device: string) =>
      (await c.storage.rows(`SHOW TAG VALUES FROM iface WITH KEY = "ifname" WHERE device = '${device}'`))
        .length;
    expect(await ifnames('ops-1')).toBe(0);
    expect(await c.storage.rows(`SELECT * FROM snmp WHERE device = 'ops-1'`)).toHaveLength(0);
    expect(await ifnames('gw-1')).toBe(40);
    expect(await ifnames('sw-x')).toBe(16);
    expect(await c.storage.rows(`SELECT * FROM event WHERE device = 'sw-x'`)).toHaveLength(0);
    expect(c.collector.stats().rejected).toEqual({ not_network_device: 2 });
    expect(c.collector.stats().dropped).toEqual({ name_limit: 300 - 16 + 1 });
    expect(await c.metrics()).toContain(
      'cfm_collector_messages_rejected_total{reason="not_network_device"} 2',
    );
    expect(c.logs.filter((l) => /not_network_device/.test(String(l.msg))).map((l) => l.device)).toEqual([
      'ops-1',
    ]);

    // Registered as a switch, the device gets the per-device bounds.
    writeFileAtomic(
      c.registryFile,
      JSON.stringify(
        fleet([
          { id: 'ops-1', school: A, classroom: 'c0701', kind: 'panel' },
          { id: 'gw-1', school: A, kind: 'router' },
          { id: 'sw-x', school: A, kind: 'switch' },
        ]),
      ),
    );
    await waitFor(async () => (await c.health()).body.registry.devices === 3, { what: 'import picked up' });
    await c.send(A, 'sw-x', 'iface', poll(now - 5, names('x', 300)));
    await settled(c, 6);
    expect(await ifnames('sw-x')).toBe(300);
  });

  it('bounds the unregistered devices tracked per school; registered devices are never refused', async () => {
    n++;
    const [A, X] = [schoolId(1), schoolId(2)];
    const c = await setup(
      registry({
        schools: [school(A, '330106')],
        classrooms: [{ id: 'c0701', school: A, name: '七年级1班', isClass: true }],
        devices: [{ id: 'ops-1', school: A, classroom: 'c0701', kind: 'panel' }],
      }),
      [A, X],
    );
    const now = Date.now();
    // Readings refused for their date take no place (checked before attribution).
    for (let i = 0; i < 10; i++) await c.send(X, `future-${i}`, 'telemetry', telemetry(now + 10 * DAY_MS, i));
    // A flood of invented ids in an unknown school, and in a known one.
    for (let i = 0; i < 70; i++) await c.send(X, `fake-${i}`, 'telemetry', telemetry(now, i));
    for (let i = 0; i < 70; i++) await c.send(A, `fake-${i}`, 'telemetry', telemetry(now, 100 + i));
    await c.send(A, 'ops-1', 'telemetry', telemetry(now, 1_000));
    await c.send(X, 'fake-3', 'telemetry', telemetry(now + 1, 1_001)); // already tracked: still stored
    await settled(c, 152);

    const devicesOf = async (s: string) =>
      (await c.storage.rows(`SHOW TAG VALUES FROM host WITH KEY = "device" WHERE school = '${s}'`)).length;
    expect(await devicesOf(X)).toBe(64);
    expect(await devicesOf(A)).toBe(65); // 64 unassigned + the registered one
    expect(await c.storage.rows(`SELECT uptime_s, region FROM host WHERE device = 'ops-1'`)).toMatchObject([
      { uptime_s: 1_000, region: XIHU },
    ]);
    expect(c.collector.stats().rejected).toEqual({ in_future: 10, unassigned_limit: 12 });
    expect(c.logs.filter((l) => /in_future/.test(String(l.msg)))).toHaveLength(1); // throttled: no device state
    expect(await c.metrics()).toContain(
      'cfm_collector_messages_rejected_total{reason="unassigned_limit"} 12',
    );
    expect(c.logs.filter((l) => /unassigned_limit/.test(String(l.msg)))).toHaveLength(2); // once per school

    // Registering devices frees their places.
    const fleet = registry({
      schools: [school(A, '330106')],
      classrooms: [{ id: 'c0701', school: A, name: '七年级1班', isClass: true }],
      devices: [
        { id: 'ops-1', school: A, classroom: 'c0701', kind: 'panel' },
        { id: 'fake-0', school: A, kind: 'panel' },
      ],
    });
    writeFileAtomic(c.registryFile, JSON.stringify(fleet));
    await waitFor(async () => (await c.health()).body.registry.devices === 2, { what: 'import picked up' });
    await c.send(A, 'fake-0', 'telemetry', telemetry(now + 2, 2_000));
    await c.send(A, 'fake-65', 'telemetry', telemetry(now + 2, 2_001)); // takes fake-0's place
    await c.send(A, 'fake-66', 'telemetry', telemetry(now + 2, 2_002)); // still full
    await settled(c, 155);
    expect(c.collector.stats().rejected).toEqual({ in_future: 10, unassigned_limit: 13 });
    expect(await c.storage.rows(`SELECT uptime_s, region FROM host WHERE uptime_s >= 2000`)).toMatchObject([
      { uptime_s: 2_000, region: XIHU },
      { uptime_s: 2_001, region: UNASSIGNED_REGION },
    ]);
  });

  it('an unregistered device silent for unassignedIdleS gives its place back when the school is full', async () => {
    n++;
    const X = schoolId(1);
    let skipMs = 0;
    const now = () => Date.now() + skipMs;
    const c = await setup(
      registry({}),
      [X],
      { limits: { maxUnassignedPerSchool: 3, unassignedIdleS: 600 } },
      { now },
    );
    const t = Date.now();
    for (let i = 0; i < 3; i++) await c.send(X, `tried-${i}`, 'telemetry', telemetry(t, i));
    await c.send(X, 'new-0', 'telemetry', telemetry(t, 10));
    await settled(c, 4);
    expect(c.collector.stats().rejected).toEqual({ unassigned_limit: 1 });

    // Five minutes on, one of them speaks again; eleven minutes on, the other two have been silent too long.
    skipMs = 300_000;
    await c.send(X, 'tried-0', 'telemetry', telemetry(t + skipMs, 20));
    await settled(c, 5);
    skipMs = 660_000;
    await c.send(X, 'new-0', 'telemetry', telemetry(t + skipMs, 30));
    await c.send(X, 'new-1', 'telemetry', telemetry(t + skipMs, 31));
    await c.send(X, 'new-2', 'telemetry', telemetry(t + skipMs, 32)); // tried-0 still holds the third place
    await settled(c, 8);
    expect(c.collector.stats().rejected).toEqual({ unassigned_limit: 2 });
    expect(c.collector.attributor.unassignedCounts()).toEqual(new Map([[X, 3]]));
    expect(
      (await c.storage.rows('SELECT uptime_s FROM host WHERE uptime_s >= 20')).map((r) => r.uptime_s),
    ).toEqual([20, 30, 31]);
  });

  it('a status flood: presence follows every status, status_change events are bounded per minute, /healthz stays responsive', async () => {
    n++;
    const A = schoolId(1);
    // The collector's clock: real time, strictly increasing (one point per transition), and skippable.
    let skipMs = 0;
    let last = 0;
    const now = () => {
      last = Math.max(Date.now() + skipMs, last + 1);
      return last;
    };
    const c = await setup(
      registry({
        schools: [school(A, '330106')],
        classrooms: [{ id: 'c0701', school: A, name: '七年级1班', isClass: true }],
        devices: [{ id: 'ops-1', school: A, classroom: 'c0701', kind: 'panel' }],
      }),
      [A],
      {},
      { now },
    );
    const latencies: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t = performance.now();
        const h = await c.health();
        expect(h.code).toBe(200);
        latencies.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const N = 400;
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: N }, (_, i) =>
        c.send(
          A,
          'ops-1',
          'status',
          status(t0, i % 2 === 0 ? { state: 'online' } : { state: 'offline', reason: 'will' }),
          true,
        ),
      ),
    );
    await settled(c, N);
    polling = false;
    await poller;

    // Every status was a transition: the state follows them all…
    expect(c.collector.presence.get(A, 'ops-1')).toMatchObject({ online: false });
    expect(await c.storage.rows('SELECT count(online) FROM presence')).toMatchObject([{ count: N }]);
    // …but only 20 status_change events per minute are written; the rest are counted.
    const events = await c.storage.rows("SELECT * FROM event WHERE type = 'status_change'");
    expect(events).toHaveLength(20);
    expect(c.collector.stats().dropped).toEqual({ flap_limit: N - 20 });
    expect(await c.metrics()).toContain(`cfm_collector_entries_dropped_total{reason="flap_limit"} ${N - 20}`);
    expect(c.logs.filter((l) => /flap_limit/.test(String(l.msg)))).toHaveLength(1);
    expect(c.logs.filter((l) => l.msg === 'presence changed')).toHaveLength(20);
    expect(latencies.length).toBeGreaterThan(0);
    // Responsive, not fast: a stalled event loop shows as many-second gaps; a loaded 2-core CI machine
    // can delay one request by a second on its own, so the bound is generous and the median is checked too.
    const sorted = [...latencies].sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(1_000);
    expect(sorted[sorted.length - 1]).toBeLessThan(5_000);

    // A minute later the device may change state (and be reported) again.
    skipMs = 61_000;
    await c.send(A, 'ops-1', 'status', status(Date.now(), { state: 'online' }), true);
    await settled(c, N + 1);
    expect(await c.storage.rows("SELECT * FROM event WHERE type = 'status_change'")).toHaveLength(21);
  });
});

describe('probe results (the poller measures; the registry attributes)', () => {
  it('stores a registered router’s probe with registry tags; refuses invalid, misdated, non-network and flooding ones by reason, storing nothing of them', async () => {
    n++;
    const [A, X] = [schoolId(1), schoolId(2)];
    const c = await setup(
      registry({
        schools: [school(A, '330106')],
        classrooms: [{ id: 'c0701', school: A, name: '七年级1班', isClass: true }],
        devices: [
          { id: 'ops-1', school: A, classroom: 'c0701', kind: 'panel' },
          { id: 'gw-1', school: A, kind: 'router' },
        ],
      }),
      [A, X],
      { limits: { maxUnassignedPerSchool: 3 } },
    );
    const now = Date.now();
    const probe = (over: Record<string, unknown> = {}) => ({ ...EXAMPLES.probe, ts: now - 1_000, ...over });
    const raw = (device: string, payload: unknown) =>
      c.pub.publishAsync(
        buildTopic({ school: A, device, channel: 'probe' }),
        typeof payload === 'string' ? payload : JSON.stringify(payload),
        { qos: 1 },
      );
    // Stored: the registered router (the payload's kind `switch` loses to the registry's `router`).
    await raw('gw-1', probe({ kind: 'switch', sent: 20, received: 15 }));
    const invalid = [
      probe({ received: 21 }), // received > sent
      probe({ rttMs: { min: 5, avg: 4, max: 6 } }), // out of order
      probe({ rttMs: { min: -1, avg: 4, max: 6 } }), // negative
      probe({ rttMs: { min: 1, avg: 4, max: 60_001 } }), // beyond a minute
      probe({ received: 0 }), // nothing answered, yet RTTs
      probe({ rttMs: null }), // answers, yet no RTT
      probe({ sent: 0, received: 0, rttMs: null, jitterMs: null }),
      probe({ sent: 1_001 }),
      probe({ received: 1, sent: 1, jitterMs: 3, rttMs: { min: 1, avg: 1, max: 1 } }), // jitter of one answer
      probe({ method: 'tcp' }), // tcp without its port
      probe({ port: 80 }), // a port with icmp
      probe({ jitterMs: -2 }),
    ];
    for (const p of invalid) await raw('gw-1', p);
    await raw('gw-1', JSON.stringify(probe()).replace('"min":3.1', '"min":NaN')); // not JSON at all
    await raw('gw-1', probe({ ts: now + 10 * DAY_MS })); // far future
    await raw('gw-1', probe({ ts: now - 60 * DAY_MS })); // far past
    await raw('ops-1', probe()); // the registry says panel: not a network device
    // A flood of invented devices: 3 tracked as unassigned (maxUnassignedPerSchool), the rest refused.
    for (let i = 0; i < 20; i++) await raw(`fake-${i}`, probe({ ts: now - 500 + i }));
    const total = 1 + invalid.length + 4 + 20;
    await settled(c, total);

    const rows = await c.storage.rows('SELECT * FROM probe');
    expect(rows.filter((r) => r.device === 'gw-1')).toEqual([
      expect.objectContaining({
        school: A,
        device: 'gw-1',
        region: XIHU,
        kind: 'router',
        method: 'icmp',
        sent: 20,
        received: 15,
        loss_pct: 25,
        rtt_min_ms: 3.1,
        rtt_avg_ms: 4.6,
        rtt_max_ms: 11.2,
        jitter_ms: 1.4,
      }),
    ]);
    expect(rows.filter((r) => r.device === 'ops-1')).toHaveLength(0);
    const fakes = rows.filter((r) => String(r.device).startsWith('fake-'));
    expect(fakes).toHaveLength(3);
    for (const f of fakes) expect(f.region).toBe(UNASSIGNED_REGION);
    expect(rows).toHaveLength(4);
    expect(c.collector.stats().rejected).toEqual({
      invalid: invalid.length,
      not_json: 1,
      in_future: 1,
      too_old: 1,
      not_network_device: 1,
      unassigned_limit: 17,
    });
    expect(c.logs.filter((l) => /not_network_device/.test(String(l.msg))).map((l) => l.msg)).toEqual([
      'probe results for a device the registry lists as neither router, switch nor AP rejected (not_network_device); logged once per device',
    ]);
    // No presence from a probe: a measurement by the poller, not a sign of life of the device.
    expect(await c.storage.rows(`SELECT * FROM presence WHERE device = 'gw-1'`)).toHaveLength(0);
  });
});
