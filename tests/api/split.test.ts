import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TokenStore } from '../../api/tokens.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Registry } from '../../contracts/registry.js';
import { connectPresence } from '../../dev/presence.js';
import { webhookReceiver } from '../helpers/alerts.js';
import { ALL_DAY, CITY as FIXTURE } from '../helpers/city.js';
import { freePort, Influxd, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * The scaled deployment's shape, as real processes (`npm run api -- run --role …`): two stateless API instances
 * and one worker that runs alerting and the rollups, on a real broker and InfluxDB. The instances answer the
 * same requests identically — the alert routes too, forwarded to the worker — while the worker alone fires.
 */
const repo = fileURLToPath(new URL('../../', import.meta.url));
const SCHOOL = '3301060001';
const CITY: Registry = {
  regions: FIXTURE.regions,
  schools: [
    {
      id: SCHOOL,
      name: '西湖区第一小学',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 2,
      students: 90,
      teachers: 6,
    },
  ],
  classrooms: ['c1', 'c2'].map((id, i) => ({ id, school: SCHOOL, name: `一(${i + 1})班`, isClass: true })),
  devices: ['c1', 'c2'].map((c) => ({ id: `pn-${c}`, school: SCHOOL, classroom: c, kind: 'panel' as const })),
};

const influxd = new Influxd();
const mosquitto = new Mosquitto();
const children = new Set<ChildProcess>();
let dir: string;
type Notified = { title: string; items: { kind: string; rule: string; device: string | null }[] };
let hook: Awaited<ReturnType<typeof webhookReceiver<Notified>>>;
let token: string;
let worker: { url: string; child: ChildProcess };
let apis: { url: string; child: ChildProcess }[];

/** One process of the API family, started as an operator starts it; resolves once it answers /health. */
async function start(role: 'api' | 'worker', config: Record<string, unknown>) {
  const port = await freePort();
  const file = join(dir, `${role}-${port}.yaml`);
  writeFileSync(file, stringify({ ...config, api: { ...(config.api as object), port } }));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'api/main.ts', 'run', '--role', role, '--config', file],
    {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.add(child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.once('exit', () => children.delete(child));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`${role} exited ${child.exitCode}:\n${out}`);
      return (await fetch(`${url}/health`).catch(() => undefined))?.ok === true;
    },
    { timeoutMs: 60_000, what: `${role} answering /health` },
  );
  return { url, child };
}

type Answer = { status: number; body: Record<string, unknown> };
const get = async (url: string): Promise<Answer> => {
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};
const post = async (url: string, body: unknown) => {
  const r = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-split-'));
  await Promise.all([influxd.start(), mosquitto.start()]);
  hook = await webhookReceiver<Notified>();
  const registryFile = join(dir, 'registry.json');
  await new RegistryStore(registryFile)
    .load()
    .import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  const tokensFile = join(dir, 'tokens.json');
  token = new TokenStore(tokensFile).load().add('值班', 'ops').token;
  writeFileSync(join(dir, 'calendar.yaml'), stringify({ calendars: [ALL_DAY] }));
  const shared = {
    influx: { url: influxd.url, database: 'split' },
    api: {
      host: '127.0.0.1',
      registryFile,
      tokensFile,
      calendarFile: join(dir, 'calendar.yaml'),
      preloadDays: 0,
      mqtt: { url: mosquitto.url },
    },
    alerts: {
      stateFile: join(dir, 'alerts-state.json'),
      groupWaitS: 0,
      rules: { device_offline: { forS: 1, resolveAfterS: 1, renotifyS: 0 } },
      channels: [
        {
          kind: 'webhook',
          name: 'hook',
          url: hook.url,
        },
      ],
    },
  };
  worker = await start('worker', shared);
  const forwarded = { ...shared, api: { ...shared.api, alertsUrl: worker.url } };
  apis = await Promise.all([start('api', forwarded), start('api', forwarded)]);
}, 120_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await waitFor(() => children.size === 0, { timeoutMs: 20_000 }).catch(() => {
    for (const c of children) c.kill('SIGKILL');
  });
  await hook?.close();
  await Promise.all([influxd.dispose(), mosquitto.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('the split deployment: two API instances and one worker', () => {
  it('both API instances answer the fleet and report routes identically; the worker serves only its own', async () => {
    for (const path of ['/v1/schools', '/v1/devices', '/v1/alerts', '/v1/silences']) {
      const [a, b] = (await Promise.all(apis.map((api) => get(`${api.url}${path}`)))) as [Answer, Answer];
      expect(a.status, path).toBe(200);
      expect(b, path).toEqual(a);
    }
    expect((await get(`${worker.url}/v1/devices`)).status).toBe(404);
    expect((await get(`${worker.url}/v1/alerts`)).status).toBe(200);
  });

  it('a device dies: the worker alone notifies, once; both instances show the alert; an ack or a silence through one is seen through the other', async () => {
    const panel: MqttClient = await connectPresence(mosquitto.url, {
      school: SCHOOL,
      device: 'pn-c1',
      keepaliveS: 2,
    });
    panel.stream.destroy(); // killed: the broker publishes its will
    await waitFor(() => hook.got.length >= 1, { timeoutMs: 20_000, what: 'the notification' });
    const firing = async () => {
      const [a, b] = (await Promise.all(apis.map((api) => get(`${api.url}/v1/alerts`)))) as [Answer, Answer];
      expect(b).toEqual(a);
      return a.body.items as {
        id: string;
        rule: string;
        device: string;
        state: string;
        ackedBy: string | null;
      }[];
    };
    await waitFor(async () => (await firing()).some((x) => x.state === 'firing'), { timeoutMs: 10_000 });
    const [alert] = await firing();
    expect(alert).toMatchObject({ rule: 'device_offline', device: 'pn-c1', state: 'firing', ackedBy: null });
    expect(hook.got.map((n) => n.items.map((i) => `${i.kind}:${i.rule}:${i.device}`))).toEqual([
      ['firing:device_offline:pn-c1'],
    ]);

    const ack = await post(`${apis[0]!.url}/v1/alerts/${encodeURIComponent(alert!.id)}/ack`, {});
    expect(ack.status, JSON.stringify(ack.body)).toBe(200);
    expect((await firing())[0]).toMatchObject({ id: alert!.id, ackedBy: '值班' });

    const silence = await post(`${apis[1]!.url}/v1/silences`, {
      school: SCHOOL,
      device: 'pn-c2',
      minutes: 60,
      comment: '换屏',
    });
    expect(silence.status, JSON.stringify(silence.body)).toBe(201);
    const listed = await get(`${apis[0]!.url}/v1/silences`);
    expect((listed.body.items as { comment: string }[]).map((s) => s.comment)).toEqual(['换屏']);
    // Two instances, one worker: still the one message.
    expect(hook.got).toHaveLength(1);
  });

  it('an instance whose worker does not answer says so (503) for the alert routes and goes on serving the rest', async () => {
    worker.child.kill('SIGTERM');
    await waitFor(() => worker.child.exitCode !== null || worker.child.signalCode !== null, {
      timeoutMs: 20_000,
    });
    const alerts = await get(`${apis[0]!.url}/v1/alerts`);
    expect(alerts.status).toBe(503);
    expect(alerts.body).toMatchObject({
      code: 'CFM_API_UNAVAILABLE',
      message: expect.stringMatching(/alerting worker/),
    });
    expect((await get(`${apis[0]!.url}/v1/devices`)).status).toBe(200);
  });
});
