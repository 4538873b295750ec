import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { agentConfigSchema, ClassroomAgent } from '../../agents/classroom/agent.js';
import { AlertService, alertsConfigSchema } from '../../alerting/service.js';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { mqttConfigSchema } from '../../common/mqtt.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { Registry } from '../../contracts/registry.js';
import { PjlinkSimulator } from '../../dev/pjlink-sim.js';
import { connectPresence } from '../../dev/presence.js';
import { webhookReceiver } from '../helpers/alerts.js';
import { testApp } from '../helpers/api.js';
import { ALL_DAY, CITY as FIXTURE } from '../helpers/city.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * Alerting end to end on real parts: a real Mosquitto, real MQTT clients that die without a clean disconnect
 * (the broker publishes their will), the API's live subscription, the alert service, and a local webhook
 * receiver. The calendar has class all day every day, and the rules are shortened to seconds.
 */
const SCHOOL = '3301060001';
const ROOMS = Array.from({ length: 6 }, (_, i) => `c${i + 1}`);
const CITY: Registry = {
  regions: FIXTURE.regions,
  schools: [
    {
      id: SCHOOL,
      name: '西湖区第一小学',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 6,
      students: 270,
      teachers: 18,
      uplinkDevice: 'gw-1',
      uplinkInterface: 1,
    },
  ],
  classrooms: ROOMS.map((id, i) => ({ id, school: SCHOOL, name: `一(${i + 1})班`, isClass: true })),
  devices: [
    { id: 'gw-1', school: SCHOOL, kind: 'router' },
    ...ROOMS.map((c) => ({ id: `pn-${c}`, school: SCHOOL, classroom: c, kind: 'panel' as const })),
  ],
};

const mosquitto = new Mosquitto();
const influxd = new Influxd();
let dir: string;
let registry: RegistryStore;
let storage: Storage;
type Notified = {
  title: string;
  items: {
    kind: string;
    rule: string;
    device: string | null;
    subject: string | null;
    affected: string[];
  }[];
};
let hook: Awaited<ReturnType<typeof webhookReceiver<Notified>>>;
const calendars = new Calendars([ALL_DAY]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-alerts-'));
  registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  await Promise.all([mosquitto.start(), influxd.start()]);
  storage = testStorage(influxd.url, { database: 'alerts' }).storage;
  await storage.start();
  hook = await webhookReceiver<Notified>();
});
afterAll(async () => {
  await hook.close();
  await storage?.stop();
  await Promise.all([mosquitto.dispose(), influxd.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

const FAST = { forS: 1, resolveAfterS: 1, renotifyS: 0 };
function startService(stateFile = join(dir, 'state.json'), tickMs = 100) {
  const live = new LiveState(
    mqttConfigSchema.parse({ url: mosquitto.url, clientId: `api-${Math.random()}` }),
    silentLogger(),
    true,
  );
  const service = new AlertService(
    alertsConfigSchema.parse({
      stateFile,
      groupWaitS: 1,
      tickMs,
      // As shipped, a classroom's grace is longer than the uplink's, so an outage is known before rooms page.
      rules: { device_offline: { ...FAST, forS: 4 }, uplink_down: FAST },
      channels: [{ kind: 'webhook', name: 'hook', url: hook.url }],
      linkBaseUrl: 'https://monitor.edu.example',
    }),
    { log: silentLogger(), registry, calendars: () => calendars, live, storage },
  );
  return { live, service };
}

/** A classroom agent as MQTT sees it: a retained birth, and a will the broker sends when the connection dies. */
function agent(device: string): Promise<MqttClient> {
  return connectPresence(mosquitto.url, { school: SCHOOL, device, keepaliveS: 5 });
}
/** Killed: the socket closes without DISCONNECT, so the broker publishes the will. */
const kill = (c: MqttClient) => c.stream.destroy();
const poller = async (type: 'unreachable' | 'recovered') => {
  const p = await mqtt.connectAsync(mosquitto.url, { clientId: `poller-${type}` });
  await p.publishAsync(
    `cfm/v1/${SCHOOL}/gw-1/event`,
    JSON.stringify({
      v: 1,
      ts: Date.now(),
      kind: 'router',
      type,
      severity: type === 'unreachable' ? 'warning' : 'info',
      subject: 'snmp',
      message: `10.33.12.1:161 ${type}`,
    }),
    { qos: 1 },
  );
  await p.endAsync();
};
const summary = () =>
  hook.got.map((n) => n.items.map((i) => `${i.kind}:${i.rule}${i.device ? `:${i.device}` : ''}`).join(','));

describe('alerting end to end', () => {
  it('a killed agent: one notification, then one resolve when it is back', async () => {
    hook.got.length = 0;
    // The coarse tick is 10 s: the 4 s grace and the 1 s hysteresis end on their own timers, well before it.
    const { live, service } = startService(join(dir, 'one.json'), 10_000);
    service.start();
    await live.start();
    await live.ready();
    const c = await agent('pn-c1');
    kill(c);
    await waitFor(() => hook.got.length === 1, { timeoutMs: 9_000 });
    const [fired] = [...service.engine.active.values()];
    expect(fired?.state).toBe('firing');
    // Fired when its grace ended, not at a coarse tick (up to 10 s later).
    expect(fired!.firingAtMs! - fired!.startedAtMs).toBeGreaterThanOrEqual(4_000);
    expect(fired!.firingAtMs! - fired!.startedAtMs).toBeLessThan(8_000);
    expect(hook.got[0]!.title).toBe('【警告】浙江省 杭州市 西湖区 西湖区第一小学：教室设备离线');
    const back = await agent('pn-c1');
    await waitFor(() => hook.got.length === 2, { timeoutMs: 9_000 });
    expect(summary()).toEqual(['firing:device_offline:pn-c1', 'resolved:device_offline:pn-c1']);
    // Both notifications are also points, for the alerts dashboard.
    await storage.drain();
    const points = await storage.rows(
      "SELECT kind, firing, duration_s, rule, severity, region FROM alert WHERE device = 'pn-c1' ORDER BY time",
    );
    expect(points.map((p) => [p.kind, p.firing, p.rule, p.severity, p.region])).toEqual([
      ['firing', 1, 'device_offline', 'warning', '330000/330100/330106'],
      ['resolved', 0, 'device_offline', 'warning', '330000/330100/330106'],
    ]);
    expect(points[1]!.duration_s).toBeGreaterThanOrEqual(4);
    await back.endAsync();
    await live.stop();
    await service.stop();
  });

  it('an uplink outage: one message naming the dead classrooms; a restart mid-incident sends nothing again; one resolve', async () => {
    hook.got.length = 0;
    const state = join(dir, 'outage.json');
    let { live, service } = startService(state);
    service.start();
    await live.start();
    await live.ready();
    const agents = await Promise.all(ROOMS.map((c) => agent(`pn-${c}`)));
    for (const a of agents) kill(a);
    await poller('unreachable');
    await waitFor(() => hook.got.length === 1, { timeoutMs: 10_000 });
    expect(summary()).toEqual(['firing:uplink_down']);
    expect(hook.got[0]!.items[0]!.affected).toEqual(ROOMS.map((c) => `pn-${c}`));

    // The API process restarts in the middle of the incident.
    await live.stop();
    await service.stop();
    ({ live, service } = startService(state));
    service.start();
    await live.start();
    await live.ready();
    // Nothing is sent again while it is still down (retained wills are replayed to the new subscription).
    // Nothing may happen: let 25 ticks (2.5 group windows) pass, then look.
    const t0 = service.ticks;
    await waitFor(() => service.ticks >= t0 + 25, { timeoutMs: 10_000 });
    expect(hook.got).toHaveLength(1);
    expect([...service.engine.active.values()].find((a) => a.rule === 'uplink_down')?.state).toBe('firing');

    await poller('recovered');
    const back = await Promise.all(ROOMS.map((c) => agent(`pn-${c}`)));
    await waitFor(() => hook.got.length === 2, { timeoutMs: 10_000 });
    const t1 = service.ticks;
    await waitFor(() => service.ticks >= t1 + 25, { timeoutMs: 10_000 }); // and nothing after the resolve
    expect(summary()).toEqual(['firing:uplink_down', 'resolved:uplink_down']);
    for (const b of back) await b.endAsync();
    await live.stop();
    await service.stop();
  });

  it('equipment and network rules: projector faults, lamp hours, a saturated uplink, clock skew, a data gap', async () => {
    hook.got.length = 0;
    const live = new LiveState(
      mqttConfigSchema.parse({ url: mosquitto.url, clientId: `api-${Math.random()}` }),
      silentLogger(),
      true,
    );
    const service = new AlertService(
      alertsConfigSchema.parse({
        stateFile: join(dir, 'equipment.json'),
        groupWaitS: 0,
        tickMs: 100,
        rules: {
          display_fault: { ...FAST, lampHoursMax: 2_000 },
          uplink_saturated: { ...FAST, thresholdPct: 80 },
          clock_skew: { ...FAST, skewMaxS: 60 },
          data_gap: { ...FAST, forS: 0, gapFactor: 2 },
          device_rebooted: { enabled: false },
        },
        channels: [{ kind: 'webhook', name: 'hook', url: hook.url }],
      }),
      { log: silentLogger(), registry, calendars: () => calendars, live },
    );
    service.start();
    await live.start();
    await live.ready();
    const items = () =>
      hook.got.flatMap((n) => n.items.map((i) => `${i.kind}:${i.rule}:${i.device ?? ''}:${i.subject ?? ''}`));
    const cleanups: (() => Promise<unknown>)[] = [];
    try {
      // A real classroom agent reading a real (simulated) PJLink projector over TCP.
      const projector = new PjlinkSimulator({ power: 1, input: '31', lampHours: 1_500, errors: '000000' });
      const pjPort = await projector.start();
      cleanups.push(() => projector.stop());
      const agent = new ClassroomAgent(
        agentConfigSchema.parse({
          school: SCHOOL,
          device: 'pn-c1',
          classroom: 'c1',
          kind: 'panel',
          intervalS: 1,
          mqtt: { url: mosquitto.url, keepaliveS: 5 },
          spool: { dir: join(dir, 'spool-pn-c1') },
          display: { source: 'pjlink', host: '127.0.0.1', port: pjPort, timeoutMs: 2_000 },
        }),
        { log: silentLogger() },
      );
      await agent.start();
      cleanups.push(() => agent.stop());
      await waitFor(() => live.device(SCHOOL, 'pn-c1')?.state === 'online', { timeoutMs: 10_000 });
      // The lamp fails (PJLink ERST lamp = error) and the lamp passes its hours.
      projector.state.errors = '020000';
      projector.state.lampHours = 2_500;
      await waitFor(
        () =>
          items().includes('firing:display_fault:pn-c1:lamp') &&
          items().includes('firing:display_fault:pn-c1:lamp_hours'),
        { timeoutMs: 15_000 },
      );
      // A new lamp: both resolve.
      projector.state.errors = '000000';
      projector.state.lampHours = 0;
      await waitFor(
        () =>
          items().includes('resolved:display_fault:pn-c1:lamp') &&
          items().includes('resolved:display_fault:pn-c1:lamp_hours'),
        { timeoutMs: 15_000 },
      );

      // The poller reports the school's 1 Gbit/s uplink at 95 %, then at 20 %.
      const poller = await mqtt.connectAsync(mosquitto.url, { clientId: 'poller-sat' });
      cleanups.push(() => poller.endAsync());
      let seq = 0;
      const iface = (mbps: number) =>
        poller.publishAsync(
          `cfm/v1/${SCHOOL}/gw-1/iface`,
          JSON.stringify({
            v: 1,
            ts: Date.now(),
            seq: seq++,
            kind: 'router',
            sysUpTimeTicks: 100 * seq,
            ifaces: [
              {
                index: 1,
                name: 'Gi0/0/1',
                uplink: true,
                operStatus: 'up',
                counterBits: 64,
                inOctets: String(seq * 1e9),
                outOctets: String(seq * 1e8),
                inBps: mbps * 1e6,
                outBps: 1e6,
                speedMbps: 1000,
              },
            ],
          }),
          { qos: 1 },
        );
      const until = async (want: string, mbps: number) => {
        await waitFor(
          async () => {
            await iface(mbps);
            return items().includes(want);
          },
          { timeoutMs: 15_000, intervalMs: 300 },
        );
      };
      await until(`firing:uplink_saturated:gw-1:`, 950);
      await until(`resolved:uplink_saturated:gw-1:`, 200);

      // A device whose clock is ten minutes ahead, and which then stops sending readings while still connected
      // (its reading loop hung): clock skew, then a data gap after two promised heartbeats.
      const hung = await connectPresence(mosquitto.url, {
        school: SCHOOL,
        device: 'pn-c2',
        keepaliveS: 5,
        heartbeatS: 1,
      });
      cleanups.push(() => hung.endAsync());
      const telemetry = (ts: number) =>
        hung.publishAsync(
          `cfm/v1/${SCHOOL}/pn-c2/telemetry`,
          JSON.stringify({ v: 1, ts, seq: seq++, kind: 'panel' }),
          { qos: 1 },
        );
      await waitFor(
        async () => {
          await telemetry(Date.now() + 600_000);
          return items().includes('firing:clock_skew:pn-c2:');
        },
        { timeoutMs: 15_000, intervalMs: 500 },
      );
      await waitFor(() => items().includes('firing:data_gap:pn-c2:'), { timeoutMs: 15_000 });
      await telemetry(Date.now());
      await waitFor(() => items().includes('resolved:data_gap:pn-c2:'), { timeoutMs: 15_000 });
      // Each condition was one alert: no rule notified twice.
      const firing = items().filter((i) => i.startsWith('firing:'));
      expect(new Set(firing).size).toBe(firing.length);
      expect(items().filter((i) => i.includes(':device_offline:'))).toEqual([]);
    } finally {
      for (const c of cleanups.reverse()) await c();
      await live.stop();
      await service.stop();
    }
  });

  it('API: active alerts scoped by region, acknowledgement, silences bounded by the token scope', async () => {
    const { live, service } = startService(join(dir, 'api.json'));
    service.start();
    const tokens = new TokenStore(join(dir, 'tokens.json')).load();
    const ops = tokens.add('西湖运维', 'ops', '330000/330100/330106').token;
    const other = tokens.add('滨江运维', 'ops', '330000/330100/330108').token;
    const app = await testApp({
      alerts: service,
      registry,
      calendars,
      tokens,
      storage,
      live,
      rateLimitMax: 1_000,
    });
    try {
      const now = Date.now();
      service.engine.observe({
        kind: 'condition',
        rule: 'device_offline',
        school: SCHOOL,
        device: 'pn-c2',
        active: true,
        atMs: now,
      });
      service.tick(now + 1_000); // pending: its grace starts
      service.tick(now + 6_000); // firing
      const auth = (t: string) => ({ authorization: `Bearer ${t}` });
      const silence = (t: string, payload: Record<string, unknown>) =>
        app.inject({ method: 'POST', url: '/v1/silences', headers: auth(t), payload });
      const mine = (await app.inject({ method: 'GET', url: '/v1/alerts', headers: auth(ops) })).json();
      expect(mine.items.map((a: { device: string; state: string }) => [a.device, a.state])).toEqual([
        ['pn-c2', 'firing'],
      ]);
      expect(
        (await app.inject({ method: 'GET', url: '/v1/alerts', headers: auth(other) })).json().items,
      ).toEqual([]);
      // The county's bare division code is its region; another county's is out of scope; an unknown one a 400.
      for (const url of ['/v1/alerts?region=330106', '/v1/alerts/history?region=330106'])
        expect((await app.inject({ method: 'GET', url, headers: auth(ops) })).statusCode).toBe(200);
      expect(
        (await app.inject({ method: 'GET', url: '/v1/alerts?region=330106', headers: auth(ops) })).json(),
      ).toEqual(mine);
      expect(
        (await app.inject({ method: 'GET', url: '/v1/alerts?region=330108', headers: auth(ops) })).json(),
      ).toMatchObject({ code: 'CFM_API_OUT_OF_SCOPE', field: 'region' });
      expect(
        (await app.inject({ method: 'GET', url: '/v1/alerts?region=330127', headers: auth(ops) })).json(),
      ).toMatchObject({ code: 'CFM_API_BAD_REQUEST', field: 'region' });
      const id = mine.items[0].id as string;
      expect(
        (
          await app.inject({
            method: 'POST',
            url: `/v1/alerts/${encodeURIComponent(id)}/ack`,
            headers: auth(other),
          })
        ).statusCode,
      ).toBe(404);
      const acked = await app.inject({
        method: 'POST',
        url: `/v1/alerts/${encodeURIComponent(id)}/ack`,
        headers: auth(ops),
      });
      expect(acked.json()).toMatchObject({ ackedBy: '西湖运维' });
      const bad = await silence(other, { school: SCHOOL, minutes: 60, comment: '割接' });
      expect(bad.statusCode).toBe(403);
      const badBody = await silence(ops, { minutes: 0, comment: 'x' });
      expect(badBody.json()).toMatchObject({ code: 'CFM_API_BAD_REQUEST', field: 'minutes' });
      const deviceAlone = await silence(ops, { device: 'wb-a1', minutes: 60, comment: '换屏' });
      expect(deviceAlone.statusCode).toBe(400);
      expect(deviceAlone.json()).toMatchObject({ code: 'CFM_API_BAD_REQUEST', field: 'school' });
      const ok = await silence(ops, { rule: 'device_offline', minutes: 60, comment: '机房割接' });
      expect(ok.statusCode).toBe(201);
      expect(ok.json()).toMatchObject({
        region: '330000/330100/330106',
        rule: 'device_offline',
        createdBy: '西湖运维',
      });
      // A silence of a region named by its bare code keeps the path it names (what silences match on).
      const byCode = await silence(ops, { region: '330106', minutes: 60, comment: '区网割接' });
      expect(byCode.statusCode).toBe(201);
      expect(byCode.json()).toMatchObject({ region: '330000/330100/330106' });
      expect(
        (await app.inject({ method: 'GET', url: '/v1/silences', headers: auth(other) })).json().items,
      ).toEqual([]);
    } finally {
      await app.close();
      await service.stop();
    }
  });
});

describe('alert signals (no broker: messages handed to the service directly)', () => {
  const at = (local: string) => Date.parse(`${local}+08:00`);
  const make = (extra: Record<string, unknown> = {}, stateFile = join(dir, `sig-${Math.random()}.json`)) =>
    new AlertService(
      alertsConfigSchema.parse({
        stateFile,
        groupWaitS: 0,
        rules: { device_offline: FAST, uplink_down: FAST },
        ...extra,
      }),
      {
        log: silentLogger(),
        registry,
        calendars: () => calendars,
        live: new LiveState(undefined, silentLogger(), true),
      },
    );
  const status = (
    device: string,
    state: 'online' | 'offline',
    atMs: number,
    reason?: 'will' | 'shutdown',
    retained = false,
  ) => ({
    channel: 'status' as const,
    school: SCHOOL,
    device,
    atMs,
    retained,
    message: { v: 1 as const, ts: atMs, state, kind: 'panel' as const, ...(reason ? { reason } : {}) },
  });

  it('a clean shutdown and a replayed (retained) offline status are not outages; a will is', () => {
    const s = make();
    const t = at('2026-10-08T08:05:00');
    s.signal(status('pn-c1', 'offline', t, 'shutdown'));
    s.signal(status('pn-c2', 'offline', t, 'will', true));
    s.signal(status('pn-c3', 'offline', t, 'will'));
    s.signal(status('pn-c4', 'offline', t, 'will', false));
    s.signal(status('pn-c4', 'offline', t + 1, 'shutdown')); // switched off properly after all
    expect([...s.engine.active.values()].filter((a) => a.raw).map((a) => a.device)).toEqual(['pn-c3']);
  });

  it('an uplink reading clears an unreachable router whose "recovered" event was lost', () => {
    const s = make();
    const t = at('2026-10-08T08:05:00');
    s.signal({
      channel: 'event',
      school: SCHOOL,
      device: 'gw-1',
      atMs: t,
      message: {
        v: 1,
        ts: t,
        kind: 'router',
        type: 'unreachable',
        severity: 'warning',
        subject: 'snmp',
        message: 'timeout',
      },
    });
    expect(s.engine.active.get(`uplink_down|${SCHOOL}||`)?.raw).toBe(true);
    s.signal({
      channel: 'iface',
      school: SCHOOL,
      device: 'gw-1',
      atMs: t + 60_000,
      message: {
        v: 1,
        ts: t + 60_000,
        seq: 2,
        kind: 'router',
        sysUpTimeTicks: 1,
        ifaces: [
          {
            index: 1,
            name: 'Gi0/0/1',
            uplink: true,
            operStatus: 'up',
            counterBits: 64,
            inOctets: '1',
            outOctets: '1',
            inBps: 1e6,
            outBps: 1e6,
            speedMbps: 1000,
          },
        ],
      },
    });
    expect(s.engine.active.get(`uplink_down|${SCHOOL}||`)?.raw).toBe(false);
  });

  it('a maintenance window across midnight holds notifications inside it only', async () => {
    const s = make({
      maintenance: [{ name: '夜间维护', weekdays: ['wed', 'thu'], from: '22:00', to: '06:00' }],
      channels: [{ kind: 'webhook', name: 'hook', url: hook.url }],
    });
    hook.got.length = 0;
    for (const [i, t] of [
      at('2026-10-07T23:00:00'),
      at('2026-10-08T05:00:00'),
      at('2026-10-08T07:00:00'),
    ].entries()) {
      s.engine.observe({
        kind: 'instant',
        rule: 'device_rebooted',
        school: SCHOOL,
        device: `gw-${i}`,
        atMs: t,
        message: 'reboot',
      });
      s.tick(t + 1_000);
      s.tick(t + 2_000);
    }
    await waitFor(() => hook.got.length === 1, { timeoutMs: 5_000 });
    expect(hook.got[0]!.items.map((i) => i.device)).toEqual(['gw-2']);
    expect(s.engine.history).toHaveLength(3);
    await s.stop();
  });

  it('drops a saved silence naming a device without its school (it would match that id in every school), and says so', async () => {
    const stateFile = join(dir, 'old-silences.json');
    const t = at('2026-10-08T08:00:00');
    const silence = (extra: Record<string, unknown>) => ({
      id: `s-${Object.keys(extra).join('-')}`,
      createdBy: 'county-a',
      comment: 'maintenance',
      startsAtMs: t,
      endsAtMs: t + 3_600_000,
      ...extra,
    });
    writeFileSync(
      stateFile,
      JSON.stringify({
        version: 1,
        active: [],
        history: [],
        queue: [],
        deliveries: [],
        silences: [silence({ school: SCHOOL, device: 'gw-1' }), silence({ device: 'gw-1' })],
      }),
    );
    const { log, lines } = captureLogger('api');
    const service = new AlertService(alertsConfigSchema.parse({ stateFile, rules: { uplink_down: FAST } }), {
      log,
      registry,
      calendars: () => calendars,
      live: new LiveState(undefined, silentLogger(), true),
    });
    service.start();
    try {
      expect(service.silences.map((x) => x.id)).toEqual(['s-school-device']);
      expect(lines.filter((l) => String(l.msg).startsWith('saved silences dropped'))).toMatchObject([
        { dropped: 1 },
      ]);
    } finally {
      await service.stop();
    }
  });

  it('a delivery cut short by a restart is finished by the next process', async () => {
    const stateFile = join(dir, 'resume.json');
    // Nothing listens on the first URL: the delivery stays pending (retrying) when the process stops.
    const first = make(
      {
        channels: [{ kind: 'webhook', name: 'hook', url: 'http://127.0.0.1:9/hook' }],
        delivery: { minDelayMs: 60_000 },
      },
      stateFile,
    );
    const t = at('2026-10-08T08:05:00');
    first.engine.observe({
      kind: 'instant',
      rule: 'device_rebooted',
      school: SCHOOL,
      device: 'gw-9',
      atMs: t,
      message: 'reboot',
    });
    first.tick(t + 1_000);
    first.tick(t + 2_000);
    await waitFor(() => first.deliverer.records[0]?.attempts === 1, { timeoutMs: 5_000 });
    expect(first.deliverer.records[0]!.status).toBe('pending');
    await first.stop();
    hook.got.length = 0;
    const second = make({ channels: [{ kind: 'webhook', name: 'hook', url: hook.url }] }, stateFile);
    second.start();
    try {
      await waitFor(() => hook.got.length === 1, { timeoutMs: 5_000 });
      expect(hook.got[0]!.items.map((i) => i.device)).toEqual(['gw-9']);
      expect(second.deliverer.records[0]).toMatchObject({ status: 'delivered', attempts: 2 });
    } finally {
      await second.stop();
    }
  });
});
