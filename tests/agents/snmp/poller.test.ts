import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeText, toBigInt } from '../../../agents/snmp/join.js';
import { Poller, pollerConfigSchema, shardOf } from '../../../agents/snmp/poller.js';
import { Collector, collectorConfigSchema } from '../../../collector/collector.js';
import { silentLogger } from '../../../common/log.js';
import { decodePayload } from '../../../contracts/messages.js';
import { freePort } from '../../../dev/ports.js';
import { type SimIface, SnmpSim } from '../../../dev/snmp-sim.js';
import { Snmpd } from '../../../dev/snmpd.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../../helpers/influx.js';
import { Mosquitto } from '../../helpers/mqtt.js';
import { UdpDelayProxy } from '../../helpers/udp-delay.js';

const SCHOOL = '3301060001';
const mosquitto = new Mosquitto();
const snmpd = new Snmpd({
  community: 'cfm-test',
  v3: { user: 'cfmuser', authPassword: 'authpass123', privPassword: 'privpass123' },
  sysName: 'gw-test',
});
let observer: MqttClient;
const seen: { topic: string; payload: string }[] = [];

beforeAll(async () => {
  await Promise.all([mosquitto.start(), snmpd.start()]);
  observer = await mqtt.connectAsync(mosquitto.url, { clientId: 'observer' });
  observer.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString() }));
  await observer.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });
});
afterAll(async () => {
  await observer.endAsync();
  await Promise.all([mosquitto.dispose(), snmpd.dispose()]);
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  seen.length = 0;
});

async function poller(targets: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  const { log, lines } = captureLogger('poller');
  const p = new Poller(
    pollerConfigSchema.parse({
      mqtt: { url: mosquitto.url, clientId: `poller-${Math.random()}` },
      targets,
      ...extra,
    }),
    { log, manual: true },
  );
  await p.start();
  await p.ready();
  cleanups.push(() => p.stop());
  return { p, logs: lines };
}

async function sim(ifaces: SimIface[], opts: Partial<ConstructorParameters<typeof SnmpSim>[0]> = {}) {
  const s = await new SnmpSim({ ifaces, ...opts }).start();
  cleanups.push(() => s.stop());
  return s;
}

const iface = (index: number, extra: Partial<SimIface> = {}): SimIface => ({
  index,
  name: `GigabitEthernet0/0/${index}`,
  highSpeedMbps: 1000,
  operStatus: 1,
  inOctets: 1_000_000n,
  outOctets: 2_000_000n,
  ...extra,
});

/** /proc/net/dev lo receive bytes. */
function procLoRx(): bigint {
  const line = readFileSync('/proc/net/dev', 'utf8')
    .split('\n')
    .find((l) => l.trim().startsWith('lo:'))!;
  return BigInt(line.split(':')[1]!.trim().split(/\s+/)[0]!);
}

describe('poller against Debian snmpd', () => {
  for (const version of ['2c', '3'] as const) {
    it(`v${version}: lo octets match /proc/net/dev within one poll's traffic, sysUpTime is sane`, async () => {
      const target = {
        device: `gw-v${version}`,
        school: SCHOOL,
        address: '127.0.0.1',
        port: snmpd.port,
        version,
        ...(version === '2c'
          ? { community: 'cfm-test' }
          : { v3: { user: 'cfmuser', authKey: 'authpass123', privKey: 'privpass123' } }),
        uplink: 'lo',
      };
      const { p } = await poller([target]);
      // snmpd caches interface counters for a few seconds: poll until it answers with a value read after our
      // first look at the kernel's, then that value lies within the traffic of the poll that fetched it.
      let reading: Awaited<ReturnType<Poller['pollAll']>>[number];
      let before = 0n;
      let after = 0n;
      await waitFor(
        async () => {
          before = procLoRx();
          [reading] = await p.pollAll();
          after = procLoRx();
          return BigInt(reading!.ifaces.find((i) => i.name === 'lo')!.inOctets) >= before;
        },
        { what: 'a fresh lo counter', timeoutMs: 20_000, intervalMs: 200 },
      );
      const lo = reading!.ifaces.find((i) => i.name === 'lo')!;
      expect(lo).toMatchObject({ uplink: true, counterBits: 64, operStatus: 'up' });
      expect(BigInt(lo.inOctets)).toBeGreaterThanOrEqual(before);
      expect(BigInt(lo.inOctets)).toBeLessThanOrEqual(after);
      // snmpd started under a minute ago.
      expect(reading!.sysUpTimeTicks).toBeGreaterThan(0);
      expect(reading!.sysUpTimeTicks).toBeLessThan(60 * 100 + 60 * 100 * 10);
      // The second poll has rates.
      const [second] = await p.pollAll();
      expect(second!.ifaces.find((i) => i.name === 'lo')!.inBps).toBeGreaterThanOrEqual(0);
      // Published: status (birth with sysName) and two iface messages that the contracts accept.
      await waitFor(() => seen.filter((m) => m.topic.endsWith('/iface')).length >= 2, {
        what: 'iface messages',
      });
      for (const m of seen.filter((x) => x.topic.endsWith('/iface')))
        expect(decodePayload('iface', m.payload).ok).toBe(true);
      const status = seen.find((m) => m.topic === `cfm/v1/${SCHOOL}/gw-v${version}/status`);
      expect(JSON.parse(status!.payload)).toMatchObject({ state: 'online', info: { sysName: 'gw-test' } });
    });
  }

  it('a wrong community or v3 password is a clear error naming the target, not a hang', async () => {
    const base = {
      school: SCHOOL,
      address: '127.0.0.1',
      port: snmpd.port,
      uplink: 'lo',
      timeoutMs: 300,
      retries: 0,
    };
    const { p, logs } = await poller([
      { ...base, device: 'bad-community', community: 'wrong' },
      {
        ...base,
        device: 'bad-v3',
        version: '3',
        v3: { user: 'cfmuser', authKey: 'wrongpass1', privKey: 'privpass123' },
      },
    ]);
    const t = Date.now();
    expect(await p.pollAll()).toEqual([undefined, undefined]);
    expect(Date.now() - t).toBeLessThan(2_000);
    expect(p.stats()).toMatchObject({ polls: 2, failures: 2 });
    const warnings = logs.filter((l) => l.msg === 'target unreachable').map((l) => String(l.err));
    expect(warnings.find((w) => w.includes('bad-community'))).toMatch(
      /127\.0\.0\.1:\d+ .*no answer within 300 ms/,
    );
    expect(warnings.find((w) => w.includes('bad-v3'))).toMatch(
      /127\.0\.0\.1:\d+ .*(authentication|no answer)/i,
    );
  });
});

describe('poller against scripted agents', () => {
  it('computes rates across a 32-bit wrap on a device without ifXTable', async () => {
    const s = await sim([iface(1, { inOctets: 2n ** 32n - 1_000n, outOctets: 5_000n })], {
      noIfXTable: true,
    });
    const { p } = await poller([
      {
        device: 'old-rtr',
        school: SCHOOL,
        address: '127.0.0.1',
        port: s.port,
        community: 'public',
        uplink: 1,
      },
    ]);
    const [first] = await p.pollAll();
    expect(first!.ifaces[0]).toMatchObject({ counterBits: 32, inBps: null, uplink: true, speedMbps: 1000 });
    s.advance(1, 126_000n, 0n); // wraps: 2^32 - 1000 + 126000
    const [second] = await p.pollAll();
    const row = second!.ifaces[0]!;
    expect(BigInt(row.inOctets)).toBe(125_000n);
    // 126,000 octets = 1,008,000 bits over the sysUpTime interval: positive and finite, never a 34 Gbit spike.
    expect(row.inBps).toBeGreaterThan(0);
    expect(row.inBps!).toBeLessThan(1e9);
  });

  it('a reboot gives no rate and one reboot event instead of a spike', async () => {
    const s = await sim([iface(1), iface(2)]);
    const { p } = await poller([
      {
        device: 'rtr-rb',
        school: SCHOOL,
        address: '127.0.0.1',
        port: s.port,
        community: 'public',
        uplink: 'GigabitEthernet0/0/1',
      },
    ]);
    s.setUptimeTicks(500_000); // up for 83 minutes
    await p.pollAll();
    s.advance(1, 1_000_000n, 1_000n);
    await waitFor(() => s.uptimeTicks() > 500_002, { what: 'uptime to advance' });
    const [steady] = await p.pollAll();
    expect(steady!.ifaces[0]!.inBps).not.toBeNull();
    s.reboot(); // counters back to 0, sysUpTime ~0
    const [after] = await p.pollAll();
    expect(after!.ifaces.map((i) => [i.inBps, i.outBps])).toEqual([
      [null, null],
      [null, null],
    ]);
    await waitFor(
      () => seen.some((m) => m.topic.endsWith('/rtr-rb/event') && JSON.parse(m.payload).type === 'reboot'),
      {
        what: 'reboot event',
      },
    );
    expect(seen.filter((m) => m.topic.endsWith('/rtr-rb/event')).length).toBe(1);
  });

  it('an unreachable target raises one unreachable event, however many polls fail', async () => {
    const port = await freePort();
    const { p } = await poller([
      {
        device: 'rtr-down',
        school: SCHOOL,
        address: '127.0.0.1',
        port,
        community: 'public',
        uplink: 1,
        timeoutMs: 200,
        retries: 0,
      },
    ]);
    for (let i = 0; i < 3; i++) expect(await p.pollAll()).toEqual([undefined]);
    expect(p.stats().failures).toBe(3);
    await waitFor(() => seen.some((m) => m.topic.endsWith('/rtr-down/event')), { what: 'the event' });
    const events = seen.filter((m) => m.topic.endsWith('/rtr-down/event')).map((m) => JSON.parse(m.payload));
    expect(events).toMatchObject([{ type: 'unreachable', subject: 'snmp' }]);
  });

  it('recovers: unreachable once, recovered once', async () => {
    const s = await sim([iface(1)]);
    const { p } = await poller([
      {
        device: 'rtr-flap',
        school: SCHOOL,
        address: '127.0.0.1',
        port: s.port,
        community: 'public',
        uplink: 1,
        timeoutMs: 200,
        retries: 0,
      },
    ]);
    expect((await p.pollAll())[0]).toBeDefined();
    await s.stop();
    await p.pollAll();
    await p.pollAll();
    await s.start(); // same port (the sim keeps it)
    expect((await p.pollAll())[0]).toBeDefined();
    await waitFor(() => seen.filter((m) => m.topic.endsWith('/rtr-flap/event')).length === 2, {
      what: 'two events',
    });
    const types = seen
      .filter((m) => m.topic.endsWith('/rtr-flap/event'))
      .map((m) => JSON.parse(m.payload).type);
    expect(types).toEqual(['unreachable', 'recovered']);
  });

  it('a slow target does not delay the others', async () => {
    const slow = await sim([iface(1)], { delayMs: 800 });
    const fast = await Promise.all([1, 2, 3].map(() => sim([iface(1)])));
    const { p } = await poller(
      [slow, ...fast].map((s, i) => ({
        device: `r${i}`,
        school: SCHOOL,
        address: '127.0.0.1',
        port: s.port,
        community: 'public',
        uplink: 1,
        timeoutMs: 3_000,
      })),
      { concurrency: 4 },
    );
    const published = (i: number) => seen.some((m) => m.topic === `cfm/v1/${SCHOOL}/r${i}/iface`);
    const t = Date.now();
    const polled = p.pollAll();
    // The fast targets' readings are out while the slow one still waits for its answer.
    await waitFor(() => [1, 2, 3].every(published), { what: 'the fast targets’ readings', intervalMs: 5 });
    expect(Date.now() - t).toBeLessThan(500);
    expect(published(0)).toBe(false);
    const readings = await polled;
    expect(Date.now() - t).toBeGreaterThanOrEqual(700);
    expect(readings.every((r) => r !== undefined)).toBe(true);
  });
});

describe('poller.sourceAddress', () => {
  it('requests go out from the configured address, and an address not of this host stops start-up', async () => {
    const s = await sim([iface(1)]);
    // A relay in front of the agent records where each request came from.
    const relay = await new UdpDelayProxy({ upstreamPort: s.port }).start();
    cleanups.push(() => relay.stop());
    const target = {
      device: 'rtr-src',
      school: SCHOOL,
      address: '127.0.0.1',
      port: relay.port,
      community: 'public',
      uplink: 1,
    };
    const { p } = await poller([target], { sourceAddress: '127.0.0.2' });
    const [reading] = await p.pollAll();
    expect(reading!.ifaces).toHaveLength(1);
    expect(relay.sources.length).toBeGreaterThan(0);
    expect(new Set(relay.sources)).toEqual(new Set(['127.0.0.2']));

    const elsewhere = new Poller(
      pollerConfigSchema.parse({
        mqtt: { url: mosquitto.url },
        targets: [target],
        sourceAddress: '192.0.2.1',
      }),
      { log: silentLogger(), manual: true },
    );
    await expect(elsewhere.start()).rejects.toThrow(
      /^poller\.sourceAddress 192\.0\.2\.1: cannot bind a UDP socket there \(EADDRNOTAVAIL\)/,
    );
  });
});

describe('poller store-and-forward', () => {
  it('queues its readings on disk while the broker is away and replays every one after it returns', async () => {
    const broker = await new Mosquitto().start();
    cleanups.push(() => broker.dispose());
    const s = await sim([iface(1)]);
    const spoolDir = mkdtempSync(join(tmpdir(), 'cfm-poller-spool-'));
    cleanups.push(async () => rmSync(spoolDir, { recursive: true, force: true }));
    const p = new Poller(
      pollerConfigSchema.parse({
        mqtt: { url: broker.url, clientId: 'poller-sf', reconnectMinMs: 50, reconnectMaxMs: 200 },
        spool: { dir: spoolDir },
        targets: [
          {
            device: 'rtr-sf',
            school: SCHOOL,
            address: '127.0.0.1',
            port: s.port,
            community: 'public',
            uplink: 1,
          },
        ],
      }),
      { log: captureLogger('poller').log, manual: true },
    );
    await p.start();
    cleanups.push(() => p.stop());
    await p.ready();
    await p.pollAll();
    await waitFor(() => p.stats().published >= 2, { what: 'status and first reading published' });
    await broker.stop();
    for (let i = 0; i < 3; i++) await p.pollAll();
    await waitFor(() => p.stats().spooled >= 3, { what: 'three readings spooled' });
    expect(p.stats().queued).toBeGreaterThanOrEqual(3);
    await broker.start(); // same port
    // The spool shrinks when a message is acknowledged, a moment before the replay counts it: wait for both.
    await waitFor(() => p.stats().queued === 0 && p.stats().replayed === p.stats().spooled, {
      what: 'the spool replayed',
      timeoutMs: 15_000,
    });
    const st = p.stats();
    expect(st.replayed).toBeGreaterThanOrEqual(3);
    expect(st.droppedOldest).toBe(0);
  });
});

describe('poller → MQTT → collector → InfluxDB', () => {
  it('stores per-interface bps, utilisation and status, with the uplink marked', async () => {
    const db = await new Influxd().start();
    cleanups.push(() => db.dispose());
    const { storage } = testStorage(db.url, { database: 'snmp' });
    await storage.start();
    cleanups.push(() => storage.stop());
    const collector = new Collector(
      collectorConfigSchema.parse({
        mqtt: { url: mosquitto.url, clientId: 'col-snmp' },
        metrics: { port: 0 },
        group: 'snmp',
      }),
      { log: captureLogger('collector').log, storage },
    );
    await collector.start();
    cleanups.push(() => collector.stop());
    await collector.ready();
    const s = await sim([
      iface(1, { alias: '上联 城域网' }),
      iface(2, { highSpeedMbps: 100, operStatus: 2 }),
    ]);
    s.setUptimeTicks(1_000_000);
    const { p } = await poller([
      {
        device: 'gw-01',
        school: SCHOOL,
        address: '127.0.0.1',
        port: s.port,
        community: 'public',
        uplink: 'GigabitEthernet0/0/1',
      },
    ]);
    await p.pollAll();
    s.advance(1, 1_250_000n, 125_000n); // ≤ 100 Mbit/s over the ≥ 100 ms between polls: under the 1 Gbit/s speed
    await waitFor(() => s.uptimeTicks() >= 1_000_010, { what: 'uptime to advance' });
    const [second] = await p.pollAll();
    // Wait for both polls of this router to be stored (retained statuses of earlier tests arrive too).
    let rows: Record<string, unknown>[] = [];
    await waitFor(
      async () => {
        await storage.drain();
        rows = await storage.rows("SELECT * FROM iface WHERE device = 'gw-01' ORDER BY time");
        return rows.filter((r) => r.ifname === 'GigabitEthernet0/0/1').length >= 2;
      },
      { what: 'both polls stored' },
    );
    const last = rows.filter((r) => r.ifname === 'GigabitEthernet0/0/1').at(-1)!;
    const reported = second!.ifaces[0]!;
    expect(last).toMatchObject({
      school: SCHOOL,
      uplink: 'true',
      alias: '上联 城域网',
      speed_mbps: 1000,
      oper_status: 'up',
      oper_up: 1,
      in_bps: reported.inBps,
      util_in_pct: (reported.inBps! / 1e9) * 100,
    });
    expect(last.in_bps as number).toBeGreaterThan(0);
    const other = rows.filter((r) => r.ifname === 'GigabitEthernet0/0/2').at(-1)!;
    expect(other).toMatchObject({ uplink: 'false', oper_status: 'down', oper_up: 0, speed_mbps: 100 });
    const [snmpRow] = await storage.rows(
      "SELECT last(sys_uptime_s) AS up, last(iface_count) AS n FROM snmp WHERE device = 'gw-01'",
    );
    expect(snmpRow).toMatchObject({ n: 2 });
    expect(snmpRow!.up as number).toBeGreaterThanOrEqual(10_000);
  });
});

describe('poller helpers', () => {
  it('shards schools stably and evenly enough', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4_000; i++) counts[shardOf(`33010600${i}`, 4)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
    expect(shardOf('3301060001', 4)).toBe(shardOf('3301060001', 4));
  });

  it('splits targets by region, then by index/count; each target lands on exactly one poller', () => {
    const target = (school: string, region?: string) => ({
      device: `rtr-${school}`,
      school,
      ...(region ? { region } : {}),
      address: '127.0.0.1',
      community: 'public',
      uplink: 1,
    });
    const targets = [
      ...Array.from({ length: 40 }, (_, i) => target(`33010600${i}`, '330000/330100/330106')),
      ...Array.from({ length: 40 }, (_, i) => target(`33010800${i}`, '330000/330100/330108')),
      target('3301990001'), // no region: only pollers without `regions` take it
    ];
    const pollerFor = (shard: object) =>
      new Poller(pollerConfigSchema.parse({ mqtt: { url: 'mqtt://127.0.0.1:1' }, targets, shard }), {
        log: silentLogger(),
        manual: true,
      });
    const xihu = [0, 1].map((index) => pollerFor({ regions: ['330000/330100/330106'], index, count: 2 }));
    const binjiang = pollerFor({ regions: ['330000/330100/330108'] });
    const polled = [...xihu, binjiang].flatMap((p) => p.targets.map((t) => t.school));
    expect(new Set(polled).size).toBe(polled.length);
    expect(polled).toHaveLength(80);
    expect(xihu.every((p) => p.targets.every((t) => t.region === '330000/330100/330106'))).toBe(true);
    expect(xihu[0]!.targets.length).toBeGreaterThan(5);
    expect(xihu[1]!.targets.length).toBeGreaterThan(5);
    // A city scope takes both counties; a look-alike prefix ("33010") matches nothing: whole ids only.
    expect(pollerFor({ regions: ['330000/330100'] }).targets).toHaveLength(80);
    expect(() =>
      pollerConfigSchema.parse({ mqtt: { url: 'mqtt://x' }, shard: { regions: ['33 01'] } }),
    ).toThrow(/regions/);
    expect(pollerFor({ regions: ['330000/33010'] }).targets).toHaveLength(0);
    expect(pollerFor({}).targets).toHaveLength(81);
  });

  it('reads Counter64 buffers and GBK aliases', () => {
    expect(toBigInt(Buffer.from('ffffffffffffffff', 'hex'))).toBe(2n ** 64n - 1n);
    expect(toBigInt(42)).toBe(42n);
    expect(decodeText(Buffer.from([0xb3, 0xc7, 0xd3, 0xf2, 0xcd, 0xf8]))).toBe('城域网'); // GBK
    expect(decodeText(Buffer.from('城域网上联', 'utf8'))).toBe('城域网上联');
  });
});
