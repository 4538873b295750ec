// npm run bench:alerts [-- --schools 100 --per-school 5 --keepalive 10 --grace 10 --group 5]
//
// Detection latency: from a device's death to the delivered notification. The devices (real MQTT clients with
// wills, in a separate process) are silenced all at once with SIGSTOP — no clean disconnect, not even a TCP
// close, as when a classroom PC loses power — so the broker (the embedded one, or Mosquitto) finds each dead by its
// keepalive (MQTT-3.1.2-24: after 1.5 × keepalive) and publishes its will; the API's alert service turns the
// wills into `device_offline` alerts after the grace period and the school's group wait, and a local webhook
// receiver records when each device's notification arrives. Prints p50/p99/max beside the keepalive.
// Target: p99 ≤ 1.5 × keepalive + grace.
import { fork } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { AlertService, alertsConfigSchema } from '../alerting/service.js';
import { Broker, brokerConfigSchema } from '../broker/broker.js';
import { CredentialStore } from '../broker/credentials.js';
import { Calendars } from '../common/calendar.js';
import { LiveState } from '../common/live.js';
import { silentLogger } from '../common/log.js';
import { mqttConfigSchema } from '../common/mqtt.js';
import { RegistryStore } from '../common/registry/store.js';
import type { Registry } from '../contracts/registry.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { waitFor } from '../dev/ports.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';

const { values } = benchArgs('bench:alerts', {
  options: {
    schools: { type: 'string', default: '100' },
    'per-school': { type: 'string', default: '5' },
    keepalive: { type: 'string', default: '10' },
    grace: { type: 'string', default: '10' },
    group: { type: 'string', default: '5' },
    broker: { type: 'string', default: 'embedded' }, // or mosquitto
  },
});
const SCHOOLS = numberArg('bench:alerts', 'schools', values.schools);
const PER = numberArg('bench:alerts', 'per-school', values['per-school']);
const KEEPALIVE_S = numberArg('bench:alerts', 'keepalive', values.keepalive);
const GRACE_S = numberArg('bench:alerts', 'grace', values.grace, 0);
const GROUP_S = numberArg('bench:alerts', 'group', values.group, 0);
const N = SCHOOLS * PER;

const schools = Array.from({ length: SCHOOLS }, (_, i) => `3301060${String(i).padStart(3, '0')}`);
const devices = schools.flatMap((school) =>
  Array.from({ length: PER }, (_, k) => ({ school, device: `pn-${school}-${k}` })),
);
const city: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
  ],
  schools: schools.map((id, i) => ({
    id,
    name: `学校${i}`,
    region: '330106',
    area: 'urban',
    level: 'primary',
    classes: PER,
    students: PER * 45,
    teachers: PER * 3,
  })),
  classrooms: devices.map(({ school, device }) => ({
    id: `room-${device}`,
    school,
    name: device,
    isClass: true,
  })),
  devices: devices.map(({ school, device }) => ({
    id: device,
    school,
    classroom: `room-${device}`,
    kind: 'panel',
  })),
};
// Class all day, every day: the bench measures detection, not the calendar (tests cover the calendar).
const calendars = new Calendars([
  {
    id: 'bench',
    regions: ['330000'],
    terms: [{ name: 'bench', start: '2020-01-01', end: '2035-12-31' }],
    periods: Object.fromEntries(
      ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'].map((d) => [d, ['00:00-23:59']]),
    ),
  },
]);

const dir = benchTempDir('cfm-bench-alerts-');
// The broker: the embedded one (the default deployment; device users with generated secrets, the API as a
// subscribe-only collector user), or Mosquitto (no authentication).
const credentials = new CredentialStore(join(dir, 'credentials.yaml'));
const secrets = new Map<string, string>();
let brokerUrl: string;
let stopBroker: () => Promise<void>;
let apiAuth: { username?: string; password?: string } = {};
if (values.broker === 'mosquitto') {
  const mosquitto = await new Mosquitto().start();
  brokerUrl = mosquitto.url;
  stopBroker = () => mosquitto.dispose();
} else {
  for (const { school, device } of devices)
    secrets.set(device, await credentials.add({ username: device, role: 'device', school, device }));
  apiAuth = { username: 'api', password: await credentials.add({ username: 'api', role: 'reader' }) };
  const broker = new Broker(
    brokerConfigSchema.parse({
      credentialsFile: credentials.file,
      listeners: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }],
      holdDevicesUntilCollector: false,
    }),
    { log: silentLogger() },
  );
  await broker.start();
  brokerUrl = `mqtt://127.0.0.1:${broker.ports[0]}`;
  stopBroker = () => broker.stop();
}
const received = new Map<string, number>();
let messages = 0;
const hook = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => {
    body += c;
  });
  req.on('end', () => {
    const at = performance.now();
    const n = JSON.parse(body) as { items: { kind: string; device: string | null }[] };
    messages++;
    for (const i of n.items)
      if (i.kind === 'firing' && i.device && !received.has(i.device)) received.set(i.device, at);
    res.writeHead(200).end('{}');
  });
});
await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
const child = fork(new URL('./alerts-agents.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] });
let live: LiveState | undefined;
let service: AlertService | undefined;
try {
  const registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(city)) }]);
  live = new LiveState(
    mqttConfigSchema.parse({ url: brokerUrl, clientId: 'api', ...apiAuth }),
    silentLogger(),
    true,
    { registry: () => registry.index },
  );
  service = new AlertService(
    alertsConfigSchema.parse({
      stateFile: join(dir, 'alerts.json'),
      groupWaitS: GROUP_S,
      rules: { device_offline: { forS: GRACE_S } },
      channels: [
        {
          kind: 'webhook',
          name: 'bench',
          url: `http://127.0.0.1:${(hook.address() as { port: number }).port}/`,
        },
      ],
    }),
    { log: silentLogger(), registry, calendars: () => calendars, live },
  );
  service.start();
  await live.start();
  await live.ready();
  await new Promise<void>((resolve) => {
    child.once('message', () => resolve());
    child.send({
      url: brokerUrl,
      devices: devices.map((d) => ({ ...d, password: secrets.get(d.device) })),
      keepaliveS: KEEPALIVE_S,
    });
  });
  await waitFor(() => [...live!.devices.values()].filter((d) => d.state === 'online').length === N, {
    timeoutMs: 60_000,
  });

  // When each will reaches the API: the broker's part of the latency.
  const wills = new Map<string, number>();
  live.on('message', (m) => {
    if (m.channel === 'status' && m.message.state === 'offline' && !wills.has(m.device))
      wills.set(m.device, performance.now());
  });
  const t0 = performance.now();
  child.kill('SIGSTOP');
  const targetS = 1.5 * KEEPALIVE_S + GRACE_S;
  await waitFor(() => received.size === N, { timeoutMs: (3 * targetS + 30) * 1000, intervalMs: 100 }).catch(
    () => undefined,
  );
  const seconds = (xs: Iterable<number>) => [...xs].map((t) => (t - t0) / 1000).sort((a, b) => a - b);
  const pick = (xs: number[], p: number) =>
    xs[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)] ?? Number.NaN;
  const lat = seconds(received.values());
  const will = seconds(wills.values());
  const q = (p: number) => pick(lat, p);
  console.log(
    `alerts bench: ${N} classroom agents in ${SCHOOLS} schools (real MQTT clients, wills), ${values.broker === 'mosquitto' ? 'Mosquitto' : 'the embedded broker'}, silenced at once with SIGSTOP (no disconnect, no TCP close)`,
  );
  console.log(
    `  keepalive ${KEEPALIVE_S} s (broker gives up after 1.5 × = ${1.5 * KEEPALIVE_S} s), device_offline grace ${GRACE_S} s, group wait ${GROUP_S} s`,
  );
  console.log(
    `  notified: ${received.size} of ${N} devices, in ${messages} messages (one per school and group window)`,
  );
  console.log(
    `  broker detection (death → will at the API): p50 ${pick(will, 50).toFixed(1)} s, p99 ${pick(will, 99).toFixed(1)} s, max ${pick(will, 100).toFixed(1)} s`,
  );
  console.log(
    `  detection latency (death → notification delivered): p50 ${q(50).toFixed(1)} s, p99 ${q(99).toFixed(1)} s, max ${q(100).toFixed(1)} s`,
  );
  // The service's own part: from the will to the delivered message, beyond the grace it is told to wait.
  const over = [...received]
    .filter(([d]) => wills.has(d))
    .map(([d, t]) => t - wills.get(d)! - GRACE_S * 1000)
    .sort((a, b) => a - b);
  console.log(
    `  alert service beyond the grace (will → delivered − grace): p50 ${pick(over, 50).toFixed(0)} ms, p99 ${pick(over, 99).toFixed(0)} ms, max ${pick(over, 100).toFixed(0)} ms (negative: taken along by its school's message)`,
  );
  console.log(
    `  target: p99 ≤ 1.5 × keepalive + grace = ${targetS.toFixed(1)} s (a group wait no longer than the grace adds nothing: it counts from when the alert started)`,
  );
} finally {
  child.kill('SIGKILL');
  await live?.stop();
  await service?.stop();
  await new Promise<void>((resolve) => hook.close(() => resolve()));
  await stopBroker();
  rmSync(dir, { recursive: true, force: true });
}
