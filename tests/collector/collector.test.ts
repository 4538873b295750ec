import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { Collector, collectorConfigSchema } from '../../collector/collector.js';
import { writeFileAtomic } from '../../common/json-file.js';
import type { Storage } from '../../common/storage/storage.js';
import { EXAMPLES } from '../../contracts/examples.js';
import { MAX_PAYLOAD_BYTES } from '../../contracts/messages.js';
import { buildTopic } from '../../contracts/topics.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';

const influxd = new Influxd();
const mosquitto = new Mosquitto();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-collector-'));
/**
 * The registry the collectors read: school 3133001234 (county 330106) with the example devices. Region,
 * classroom and kind of their points come from here; other schools' devices are unassigned.
 */
const registryFile = join(tmp, 'registry.json');
writeFileAtomic(
  registryFile,
  JSON.stringify({
    regions: [
      { id: '330000', name: '浙江省', level: 'province' },
      { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
      { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
    ],
    schools: [
      {
        id: '3133001234',
        name: '西湖小学',
        region: '330106',
        area: 'urban',
        level: 'primary',
        classes: 24,
        students: 1000,
        teachers: 60,
      },
      {
        id: '3133001235',
        name: '西湖中学',
        region: '330106',
        area: 'urban',
        level: 'junior',
        classes: 24,
        students: 1000,
        teachers: 60,
        contractedMbps: 500,
      },
    ],
    classrooms: [{ id: 'c0701', school: '3133001234', name: '七年级1班' }],
    devices: [
      { id: 'c0701-ops', school: '3133001234', classroom: 'c0701', kind: 'panel' },
      { id: 'gw-01', school: '3133001234', kind: 'router' },
      { id: 'gw-01', school: '3133001235', kind: 'router' },
    ],
  }),
);
beforeAll(async () => {
  await Promise.all([influxd.start(), mosquitto.start()]);
});
afterAll(async () => {
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(tmp, { recursive: true, force: true });
});

let dbN = 0;
async function setup(overrides: Record<string, unknown> = {}, clientId?: string) {
  dbN++;
  const { storage } = testStorage(influxd.url, { database: `col${dbN}` });
  await storage.start();
  const { log, lines } = captureLogger('collector');
  const collector = new Collector(
    collectorConfigSchema.parse({
      mqtt: {
        url: mosquitto.url,
        clientId: clientId ?? `col-${dbN}`,
        reconnectMinMs: 50,
        reconnectMaxMs: 500,
      },
      metrics: { port: 0 },
      sweepIntervalMs: 50,
      // Each test its own group: a stopped collector's persistent session keeps its share of its group.
      group: `t${dbN}`,
      registryFile,
      ...overrides,
    }),
    { log, storage },
  );
  await collector.start();
  await collector.ready();
  return { storage, collector, logs: lines };
}

async function teardown(...parts: { storage: Storage; collector: Collector }[]) {
  for (const p of parts) {
    await p.collector.stop();
    await p.storage.stop();
  }
}

/** Telemetry message number i: its uptime is i, so the stored set shows each message exactly once. */
function numbered(i: number, t0: number) {
  return {
    ...EXAMPLES.telemetry,
    seq: i,
    ts: t0 + i,
    display: undefined,
    activity: undefined, // host health only: no display point
    host: { ...EXAMPLES.telemetry.host!, uptimeS: i },
  };
}

function publisher(): Promise<MqttClient> {
  return mqtt.connectAsync(mosquitto.url, { clientId: `pub-${Math.random()}`, protocolVersion: 5 });
}

describe('collector backpressure', () => {
  it('stops consuming while InfluxDB is down and loses nothing: the broker queues, the collector catches up', async () => {
    const db = new Influxd();
    onTestFinished(() => db.dispose());
    await db.start();
    const { storage } = testStorage(db.url, { database: 'bp', batchSize: 20, timeoutMs: 1_000 });
    await storage.start();
    const { log } = captureLogger('collector');
    const collector = new Collector(
      collectorConfigSchema.parse({
        mqtt: { url: mosquitto.url, clientId: 'col-bp', reconnectMinMs: 50, reconnectMaxMs: 300 },
        metrics: { port: 0 },
        sweepIntervalMs: 20,
        group: 'bp',
        registryFile,
        backpressure: { highWaterLines: 30, lowWaterLines: 0 },
      }),
      { log, storage },
    );
    await collector.start();
    await collector.ready();
    const pub = await publisher();
    const t0 = Date.now() - 60_000;
    const send = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const m = numbered(i, t0);
        await pub.publishAsync(
          buildTopic({ school: 'S1', device: 'D1', channel: 'telemetry' }),
          JSON.stringify(m),
          { qos: 1 },
        );
      }
    };
    await db.stop();
    await send(0, 40); // ~80 lines pending: above high water
    await waitFor(() => collector.paused, { what: 'collector paused', timeoutMs: 10_000 });
    // A deliberate pause is not broken: /healthz says `paused` with 200, so a health-based restart does not
    // throw away the buffer the pause protects.
    const health = await fetch(`http://127.0.0.1:${collector.metricsPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'paused', mqtt: 'paused', pausedFor: 'backlog' });
    const acceptedWhenPaused = collector.stats().accepted;
    await send(40, 300); // queued at the broker, not in the collector
    expect(collector.stats().accepted).toBe(acceptedWhenPaused);
    await db.start();
    // >= : messages in flight when the collector paused are redelivered (QoS 1 is at-least-once); they land on
    // the same series and timestamp, which the exact stored set below checks.
    await waitFor(() => !collector.paused && collector.stats().accepted >= 300, {
      what: 'caught up',
      timeoutMs: 30_000,
    });
    await storage.drain();
    const rows = await storage.rows('SELECT uptime_s FROM host');
    expect(rows.map((r) => r.uptime_s as number).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 300 }, (_, i) => i),
    );
    await pub.endAsync();
    await collector.stop();
    await storage.stop();
  });
});

describe('collector on a real Mosquitto and InfluxDB', () => {
  it('stores every channel with the values sent, and tracks presence', async () => {
    const c = await setup();
    const pub = await publisher();
    const school = '3133001234';
    const device = 'c0701-ops';
    const t0 = Date.now() - 5_000;
    await pub.publishAsync(
      buildTopic({ school, device, channel: 'status' }),
      JSON.stringify({ ...EXAMPLES.status, ts: t0 }),
      { qos: 1, retain: true },
    );
    await pub.publishAsync(
      buildTopic({ school, device, channel: 'telemetry' }),
      JSON.stringify({ ...EXAMPLES.telemetry, ts: t0 + 1 }),
      { qos: 1 },
    );
    await pub.publishAsync(
      buildTopic({ school, device: 'gw-01', channel: 'iface' }),
      JSON.stringify({ ...EXAMPLES.iface, ts: t0 + 2 }),
      {
        qos: 1,
      },
    );
    await pub.publishAsync(
      buildTopic({ school, device, channel: 'event' }),
      JSON.stringify({ ...EXAMPLES.event, ts: t0 + 3 }),
      {
        qos: 1,
      },
    );
    await waitFor(() => c.collector.stats().accepted === 4, { what: '4 accepted messages' });
    await c.storage.drain();

    const [host] = await c.storage.rows('SELECT * FROM host');
    expect(host).toMatchObject({
      time: t0 + 1,
      school,
      device,
      classroom: 'c0701',
      region: '330000/330100/330106', // from the registry (the birth announces the same)
      kind: 'panel',
      cpu_pct: 17.5,
      uptime_s: 13_530,
      mem_total_bytes: 8_589_934_592,
    });
    const [nic] = await c.storage.rows('SELECT * FROM nic');
    expect(nic).toMatchObject({ nic: 'Ethernet', rx_bps: 2_150_000, tx_bytes: 912_345_678 });
    const [display] = await c.storage.rows('SELECT * FROM display');
    expect(display).toMatchObject({
      source: 'pjlink',
      power: 'on',
      on: 1,
      in_use: 1,
      lamp_hours: 1_873,
      err_filter: 'warning',
      error_count: 0,
      touch_ok: 1,
    });
    const [iface] = await c.storage.rows('SELECT * FROM iface');
    expect(iface).toMatchObject({
      device: 'gw-01',
      ifname: 'GigabitEthernet0/0/1',
      uplink: 'true',
      in_bps: 312_500_000,
      util_in_pct: 31.25,
      util_out_pct: 4.8,
      oper_up: 1,
      in_discards: 12,
      alias: 'uplink to 城域网',
    });
    const [snmp] = await c.storage.rows('SELECT * FROM snmp');
    expect(snmp).toMatchObject({ sys_uptime_s: 8_123_456, iface_count: 1 });
    const events = await c.storage.rows("SELECT * FROM event WHERE type = 'fault'");
    expect(events[0]).toMatchObject({
      subject: 'lamp',
      severity: 'warning',
      message: EXAMPLES.event.message,
    });
    // The live birth is a transition online (with an event); the router, first heard of through a poll, is a
    // quiet first sighting (a state point, no event).
    const presence = await c.storage.rows('SELECT * FROM presence ORDER BY time');
    expect(presence.map((p) => [p.device, p.online, p.reason])).toEqual([
      [device, 1, 'birth'],
      ['gw-01', 1, 'first_seen'],
    ]);
    const changes = await c.storage.rows("SELECT * FROM event WHERE type = 'status_change'");
    expect(changes.map((e) => e.device)).toEqual([device]);

    // Last will: offline at once, reason will.
    await pub.publishAsync(
      buildTopic({ school, device, channel: 'status' }),
      JSON.stringify({ ...EXAMPLES.status, state: 'offline', reason: 'will', ts: Date.now() }),
      { qos: 1, retain: true },
    );
    await waitFor(() => c.collector.presence.get(school, device)?.online === false, { what: 'offline' });
    // Clearing the retained status (empty retained payload, MQTT-3.3.1-10) is counted apart, not as garbage.
    await pub.publishAsync(buildTopic({ school, device, channel: 'status' }), '', { qos: 1, retain: true });
    await waitFor(() => c.collector.stats().rejected.empty === 1, { what: 'empty payload counted' });
    await pub.endAsync();
    await teardown(c);
  });

  it("stores an uplink's utilisation of the school's contract where it has one, else of the port's speed", async () => {
    const c = await setup();
    const pub = await publisher();
    const ts = Date.now() - 1_000;
    // The same reading (312.5 Mbit/s in, 48 out, on a 1 Gbit/s port) from the routers of two schools: one
    // without a contract (31.25 % of the port), one on a 500 Mbit/s contract (62.5 % of it).
    for (const school of ['3133001234', '3133001235'])
      await pub.publishAsync(
        buildTopic({ school, device: 'gw-01', channel: 'iface' }),
        JSON.stringify({ ...EXAMPLES.iface, ts }),
        { qos: 1 },
      );
    await waitFor(() => c.collector.stats().accepted === 2, { what: '2 accepted messages' });
    await c.storage.drain();
    const rows = await c.storage.rows('SELECT * FROM iface GROUP BY school');
    expect(rows.map((r) => [r.school, r.in_bps, r.util_in_pct, r.util_out_pct])).toEqual([
      ['3133001234', 312_500_000, 31.25, 4.8],
      ['3133001235', 312_500_000, 62.5, 9.6],
    ]);
    await pub.endAsync();
    await teardown(c);
  });

  it('rejects malformed, oversized and wrong-topic messages, counts them by reason, and keeps going', async () => {
    const c = await setup();
    const pub = await publisher();
    const good = buildTopic({ school: 'S1', device: 'D1', channel: 'telemetry' });
    const cases: [string, string | Buffer][] = [
      [good, 'not json at all'],
      [good, Buffer.from([0xff, 0xfe, 0xfd])],
      [good, '[1,2,3]'],
      [good, JSON.stringify({ ...EXAMPLES.telemetry, v: 9 })],
      [good, JSON.stringify({ ...EXAMPLES.telemetry, kind: 'toaster' })],
      [good, JSON.stringify({ ...EXAMPLES.telemetry, ts: 'yesterday' })],
      [good, 'x'.repeat(MAX_PAYLOAD_BYTES + 1)],
      ['cfm/v1/S1/D1/bogus', JSON.stringify(EXAMPLES.telemetry)],
      ['cfm/v1/S 1/D1/telemetry', JSON.stringify(EXAMPLES.telemetry)],
      ['cfm/v1/S1/D1/telemetry/extra', JSON.stringify(EXAMPLES.telemetry)],
    ];
    for (const [topic, payload] of cases) await pub.publishAsync(topic, payload, { qos: 1 });
    // `…/extra` has six levels: the subscription `cfm/v1/+/+/+` does not match it, so nine arrive, plus one good.
    await pub.publishAsync(good, JSON.stringify({ ...EXAMPLES.telemetry, ts: Date.now() }), { qos: 1 });
    await waitFor(() => c.collector.stats().received >= 10, { what: '10 received' });
    expect(c.collector.stats()).toEqual({
      received: 10,
      accepted: 1,
      rejected: {
        not_json: 2,
        not_object: 1,
        unsupported_version: 1,
        invalid: 2,
        too_large: 1,
        unknown_channel: 1,
        bad_id: 1,
      },
      unassigned: 1, // school S1 is not in the registry
      mismatches: {},
      dropped: {},
      late: 0,
    });
    await c.storage.drain();
    expect(await c.storage.rows('SELECT count(cpu_pct) FROM host')).toMatchObject([{ count: 1 }]);

    const scrape = async () => (await fetch(`http://127.0.0.1:${c.collector.metricsPort}/metrics`)).text();
    const metrics = await scrape();
    expect(metrics).toContain('cfm_collector_messages_rejected_total{reason="not_json"} 2');
    expect(metrics).toContain('cfm_collector_messages_accepted_total{channel="telemetry"} 1');
    // Read from the collector's own counts at each scrape: the same again on the next, never added twice.
    const received = `cfm_collector_messages_received_total ${c.collector.stats().received}\n`;
    expect(metrics).toContain(received);
    const again = await scrape();
    expect(again).toContain(received);
    expect(again).toContain('cfm_collector_messages_accepted_total{channel="telemetry"} 1\n');
    expect(metrics).toMatch(/cfm_collector_points_written_total \d+/);
    expect(metrics).toContain('cfm_collector_write_request_seconds_count');
    const health = await fetch(`http://127.0.0.1:${c.collector.metricsPort}/healthz`);
    expect(health.status).toBe(200);
    await pub.endAsync();
    await teardown(c);
  });

  it('two collectors on one shared subscription store every message exactly once', async () => {
    const a = await setup({ group: 'pair' }, 'col-a');
    const b = await setup({ group: 'pair' }, 'col-b');
    expect(a.collector.stats().received + b.collector.stats().received).toBe(0);
    const pub = await publisher();
    const N = 400;
    const t0 = Date.now() - 60_000;
    for (let i = 0; i < N; i++) {
      const m = numbered(i, t0);
      await pub.publishAsync(
        buildTopic({ school: `S${i % 7}`, device: `D${i % 13}`, channel: 'telemetry' }),
        JSON.stringify(m),
        {
          qos: 1,
        },
      );
    }
    await waitFor(() => a.collector.stats().accepted + b.collector.stats().accepted >= N, {
      what: `${N} accepted`,
    });
    const sa = a.collector.stats().accepted;
    const sb = b.collector.stats().accepted;
    expect(sa).toBeGreaterThan(0);
    expect(sb).toBeGreaterThan(0);
    await Promise.all([a.storage.drain(), b.storage.drain()]);
    const count = async (s: Storage) =>
      ((await s.rows('SELECT count(uptime_s) FROM host'))[0]?.count as number) ?? 0;
    const [ca, cb] = await Promise.all([count(a.storage), count(b.storage)]);
    expect([ca, cb]).toEqual([sa, sb]);
    expect(ca + cb).toBe(N);
    // No message reached both: the union of stored uptimes is exactly 0..N-1.
    const seen = [
      ...(await a.storage.rows('SELECT uptime_s FROM host')),
      ...(await b.storage.rows('SELECT uptime_s FROM host')),
    ]
      .map((r) => r.uptime_s as number)
      .sort((x, y) => x - y);
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => i));
    await pub.endAsync();
    await teardown(a, b);
  });

  it('declares a silent device offline after offlineFactor × its heartbeat', async () => {
    // A single collector on a plain subscription sees every reading, so heartbeat timeouts are on.
    const c = await setup({ defaultHeartbeatS: 1, subscription: 'plain' });
    const pub = await publisher();
    const topic = buildTopic({ school: 'S9', device: 'quiet', channel: 'telemetry' });
    await pub.publishAsync(topic, JSON.stringify({ ...EXAMPLES.telemetry, ts: Date.now() }), { qos: 1 });
    await waitFor(() => c.collector.presence.get('S9', 'quiet')?.online === true, { what: 'online' });
    const seenAt = c.collector.presence.get('S9', 'quiet')!.lastSeenMs;
    // How late this process's timers ran meanwhile (the sweep is one): on a loaded machine the sweep that finds
    // the device silent can come seconds after it was due, and that is the machine, not the collector.
    const lateness = monitorEventLoopDelay({ resolution: 10 });
    lateness.enable();
    await waitFor(() => c.collector.presence.get('S9', 'quiet')?.online === false, {
      what: 'offline',
      timeoutMs: 10_000,
    });
    lateness.disable();
    const offlineAt = c.collector.presence.get('S9', 'quiet')!.since;
    expect(offlineAt - seenAt).toBeGreaterThanOrEqual(1_500);
    // Due at 1.5 heartbeats; found by the next sweep (every 50 ms here), however late the timers were.
    expect(offlineAt - seenAt).toBeLessThan(1_500 + 50 + lateness.max / 1e6 + 100);
    await c.storage.drain();
    const rows = await c.storage.rows("SELECT * FROM presence WHERE device = 'quiet' ORDER BY time");
    expect(rows.map((r) => [r.online, r.reason])).toEqual([
      [1, 'first_seen'],
      [0, 'timeout'],
    ]);
    await pub.endAsync();
    await teardown(c);
  });

  it('turns heartbeat timeouts off under a shared subscription, where it sees only part of the readings', async () => {
    const c = await setup({ defaultHeartbeatS: 1 });
    const pub = await publisher();
    await pub.publishAsync(
      buildTopic({ school: 'S9', device: 'shared', channel: 'telemetry' }),
      JSON.stringify({ ...EXAMPLES.telemetry, ts: Date.now() }),
      { qos: 1 },
    );
    await waitFor(() => c.collector.presence.get('S9', 'shared')?.online === true, { what: 'online' });
    // Three heartbeats of silence: still online (the broker's last will is what reports a dead device here).
    const until = Date.now() + 3_000;
    await waitFor(() => Date.now() > until, { what: 'three heartbeats', timeoutMs: 5_000 });
    expect(c.collector.presence.get('S9', 'shared')?.online).toBe(true);
    await pub.endAsync();
    await teardown(c);
  });
});
