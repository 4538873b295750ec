import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentConfigSchema, ClassroomAgent } from '../../agents/classroom/agent.js';
import { Broker } from '../../broker/broker.js';
import { Collector, collectorConfigSchema } from '../../collector/collector.js';
import { writeFileAtomic } from '../../common/json-file.js';
import { PjlinkSimulator } from '../../dev/pjlink-sim.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { startBroker } from '../helpers/mqtt.js';

/**
 * The data path end to end with real parts: classroom agent → embedded broker (auth, ACL) → collector →
 * InfluxDB 1.x, checked with InfluxQL; a broker restart with readings queued on the agent's disk; and an agent
 * process that is killed or frozen.
 */
const influxd = new Influxd();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-e2e-'));
beforeAll(async () => {
  await influxd.start();
});
afterAll(async () => {
  await influxd.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const SCHOOL = '3133001234';
let n = 0;

/**
 * The registry the collector reads: SCHOOL in county 330106 with `devices`, each in classroom `c-{device}` (as
 * agentConfig announces), of `kind`. Region, classroom and kind of the stored points come from here.
 */
function writeRegistry(file: string, devices: string[], kind: string) {
  writeFileAtomic(
    file,
    JSON.stringify({
      regions: [
        { id: '330000', name: '浙江省', level: 'province' },
        { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
        { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
      ],
      schools: [
        {
          id: SCHOOL,
          name: '西湖小学',
          region: '330106',
          area: 'urban',
          level: 'primary',
          classes: 24,
          students: 1000,
          teachers: 60,
        },
      ],
      classrooms: devices.map((d) => ({ id: `c-${d}`, school: SCHOOL, name: d })),
      devices: devices.map((d) => ({ id: d, school: SCHOOL, classroom: `c-${d}`, kind })),
    }),
  );
}

async function stack(devices: string[], kind = 'panel') {
  n++;
  const registryFile = join(tmp, `registry-${n}.json`);
  writeRegistry(registryFile, devices, kind);
  const users = [
    { username: 'collector', role: 'collector' as const },
    ...devices.map((d) => ({ username: `dev-${d}`, role: 'device' as const, school: SCHOOL, device: d })),
  ];
  const b = await startBroker(users, { holdDevicesUntilCollector: true });
  cleanups.push(() => b.dispose());
  const { storage } = testStorage(influxd.url, { database: `e2e${n}` });
  await storage.start();
  cleanups.push(() => storage.stop());
  const collector = new Collector(
    collectorConfigSchema.parse({
      mqtt: {
        url: b.url,
        username: 'collector',
        password: b.secrets.collector,
        reconnectMinMs: 50,
        reconnectMaxMs: 300,
      },
      metrics: { port: 0 },
      sweepIntervalMs: 50,
      registryFile,
    }),
    { log: captureLogger('collector').log, storage },
  );
  await collector.start();
  cleanups.push(() => collector.stop());
  await collector.ready();
  return { b, storage, collector };
}

function agentConfig(url: string, device: string, secret: string, extra: Record<string, unknown> = {}) {
  return agentConfigSchema.parse({
    school: SCHOOL,
    device,
    classroom: `c-${device}`,
    region: '330000/330100/330106',
    kind: 'panel',
    intervalS: 1,
    mqtt: {
      url,
      username: `dev-${device}`,
      password: secret,
      reconnectMinMs: 50,
      reconnectMaxMs: 300,
      keepaliveS: 5,
    },
    spool: { dir: join(tmp, `spool-${n}-${device}`) },
    replayRatePerSec: 50,
    ...extra,
  });
}

describe('agent → broker → collector → InfluxDB', () => {
  it('stores what the classroom reports, with presence and fault events', async () => {
    const { b, storage, collector } = await stack(['c0701-ops']);
    const projector = new PjlinkSimulator({ power: 1, input: '31', lampHours: 1_500, errors: '000000' });
    const pjPort = await projector.start();
    cleanups.push(() => projector.stop());
    const agent = new ClassroomAgent(
      agentConfig(b.url, 'c0701-ops', b.secrets['dev-c0701-ops']!, {
        display: { source: 'pjlink', host: '127.0.0.1', port: pjPort, timeoutMs: 2_000 },
      }),
      { log: captureLogger('agent').log },
    );
    await agent.start();
    cleanups.push(() => agent.stop());

    await waitFor(() => collector.stats().accepted >= 3, { what: 'three readings', timeoutMs: 20_000 });
    projector.state.errors = '020000'; // lamp error
    await waitFor(
      async () =>
        (await storage.drain().then(() => storage.rows("SELECT * FROM event WHERE type = 'fault'"))).length >
        0,
      { what: 'fault event stored', timeoutMs: 20_000 },
    );
    await agent.stop();
    await waitFor(() => collector.presence.get(SCHOOL, 'c0701-ops')?.online === false, {
      what: 'offline after shutdown',
    });
    await storage.drain();

    const displays = await storage.rows('SELECT * FROM display ORDER BY time');
    expect(displays.length).toBeGreaterThanOrEqual(3);
    expect(displays[0]).toMatchObject({
      school: SCHOOL,
      device: 'c0701-ops',
      classroom: 'c-c0701-ops',
      region: '330000/330100/330106',
      kind: 'panel',
      source: 'pjlink',
      power: 'on',
      on: 1,
      in_use: 1,
      use_basis: 'power',
      input: '31',
      lamp_hours: 1_500,
      err_lamp: 'ok',
    });
    expect(displays.at(-1)).toMatchObject({ err_lamp: 'error', error_count: 1 });
    // The agent sends telemetry v2 — evidence, no `inUse` (docs/usage.md): `in_use` is the collector's judgement,
    // for this PJLink-only agent by power (on, with an input).
    const hosts = await storage.rows('SELECT * FROM host');
    expect(hosts.length).toBe(displays.length);
    expect(hosts[0]!.mem_total_bytes).toBeGreaterThan(0);
    expect(hosts[0]!.uptime_s).toBeGreaterThan(0);
    const [fault] = await storage.rows("SELECT * FROM event WHERE type = 'fault'");
    expect(fault).toMatchObject({ subject: 'lamp', severity: 'critical', message: 'lamp error' });
    const presence = await storage.rows("SELECT * FROM presence WHERE device = 'c0701-ops' ORDER BY time");
    expect(presence.map((p) => [p.online, p.reason])).toEqual([
      [1, 'birth'],
      [0, 'shutdown'],
    ]);
    // Nothing was refused along the way, and the agent announced what the registry says.
    expect(collector.stats().rejected).toEqual({});
    expect(collector.stats().unassigned).toBe(0);
    expect(collector.stats().mismatches).toEqual({});
    expect(b.broker.stats()).toMatchObject({ authFailures: 0, deniedPublish: 0 });
  });

  it('queues readings on disk while the broker is down and delivers them all, in order, after it returns', async () => {
    const { b, storage, collector } = await stack(['c0702-ops']);
    const handled: number[] = [];
    const handle = collector.handle.bind(collector);
    collector.handle = (topic, payload, retained) => {
      if (topic.endsWith('/telemetry')) handled.push(JSON.parse(Buffer.from(payload).toString()).seq);
      handle(topic, payload, retained);
    };
    const agent = new ClassroomAgent(
      agentConfig(b.url, 'c0702-ops', b.secrets['dev-c0702-ops']!, { display: { source: 'simulated' } }),
      { log: captureLogger('agent').log },
    );
    await agent.start();
    cleanups.push(() => agent.stop());
    await waitFor(() => handled.length >= 2, { what: 'first readings', timeoutMs: 20_000 });

    const port = b.broker.ports[0]!;
    await b.broker.stop();
    await waitFor(() => agent.stats().spooled >= 4, { what: 'readings queued on disk', timeoutMs: 20_000 });
    expect(agent.connected).toBe(false);

    // Same port, same credentials, fresh memory: the agent is held back until the collector has subscribed.
    const again = new Broker(
      { ...b.broker.config, listeners: [{ kind: 'tcp', host: '127.0.0.1', port }] },
      { log: captureLogger('broker2').log },
    );
    await again.start();
    cleanups.push(() => again.stop());
    await waitFor(
      () => agent.connected && agent.stats().queued === 0 && handled.length >= agent.stats().readings,
      {
        what: 'queue replayed',
        timeoutMs: 30_000,
      },
    );
    await agent.stop();
    await storage.drain();

    const readings = agent.stats().readings;
    expect(agent.stats().droppedOldest).toBe(0);
    expect(agent.stats().replayed).toBeGreaterThanOrEqual(4);
    // In order, none lost (a message whose PUBACK was lost in the restart may come twice, never out of order).
    const distinct = handled.filter((s, i) => i === 0 || s !== handled[i - 1]);
    expect(distinct).toEqual(Array.from({ length: readings }, (_, i) => i));
    const [count] = await storage.rows('SELECT count(cpu_pct) FROM host');
    expect(count?.count).toBe(readings);
  });
});

describe('an agent process that dies', () => {
  function spawnAgent(url: string, device: string, secret: string, keepaliveS: number): ChildProcess {
    const file = join(tmp, `agent-${device}.yaml`);
    writeFileSync(
      file,
      JSON.stringify({
        log: { level: 'warn' },
        agent: {
          school: SCHOOL,
          device,
          kind: 'teacher_pc',
          intervalS: 60, // the collector's own heartbeat timeout (90 s) stays out of the way
          mqtt: { url, username: `dev-${device}`, password: secret, keepaliveS },
          spool: { dir: join(tmp, `spool-proc-${device}`) },
        },
      }),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', 'agents/classroom/main.ts', '--config', file], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    });
    return child;
  }

  it('is offline at once when killed, and within 1.5 × keepalive when frozen', async () => {
    const { b, collector } = await stack(['killed', 'frozen'], 'teacher_pc');
    const keepaliveS = 2;
    const killed = spawnAgent(b.url, 'killed', b.secrets['dev-killed']!, keepaliveS);
    const frozen = spawnAgent(b.url, 'frozen', b.secrets['dev-frozen']!, keepaliveS);
    const online = (d: string) => collector.presence.get(SCHOOL, d)?.online === true;
    await waitFor(() => online('killed') && online('frozen'), { what: 'both online', timeoutMs: 30_000 });

    // Killed: the kernel closes the socket, the broker publishes the last will.
    let t = Date.now();
    killed.kill('SIGKILL');
    await waitFor(() => !online('killed'), { what: 'killed agent offline', timeoutMs: 10_000 });
    expect(Date.now() - t).toBeLessThan(1.5 * keepaliveS * 1000);
    expect(collector.presence.get(SCHOOL, 'killed')).toMatchObject({ online: false });

    // Frozen (e.g. a hung PC or a cut cable): the socket stays open and only the keepalive can tell.
    t = Date.now();
    frozen.kill('SIGSTOP');
    await waitFor(() => !online('frozen'), { what: 'frozen agent offline', timeoutMs: 10_000 });
    const elapsedMs = Date.now() - t;
    // MQTT-3.1.2-24: the server disconnects after 1.5 × keepalive; allow one second for timers and delivery.
    expect(elapsedMs).toBeLessThanOrEqual(1.5 * keepaliveS * 1000 + 1_000);
    expect(elapsedMs).toBeGreaterThan(keepaliveS * 1000 - 500);
    frozen.kill('SIGKILL');
  });
});
