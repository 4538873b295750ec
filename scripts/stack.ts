// The whole stack on one machine, for a first look and for development: npm run stack [-- --classrooms 12]
//
// Starts, all on loopback: a local InfluxDB (data under var/influxdb), the embedded MQTT broker (credentials in
// var/stack-credentials.yaml), the collector, and a few simulated classrooms — each a real classroom agent
// speaking MQTT with a simulated display (one idle, one faulty) — and a school router (a real SNMP agent on
// loopback with school-day traffic) polled by the SNMP poller; then prints what the collector has stored.
// Then the API over all of it (registry of the simulated school, the example calendar, an admin token
// printed once). Dashboards and a whole simulated city arrive with issue #7. Ctrl-C stops everything.
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { agentConfigSchema, ClassroomAgent } from '../agents/classroom/agent.js';
import { Poller, pollerConfigSchema } from '../agents/snmp/poller.js';
import { ApiServer, apiConfigSchema } from '../api/server.js';
import { Broker, brokerConfigSchema } from '../broker/broker.js';
import { CredentialStore } from '../broker/credentials.js';
import { Collector, collectorConfigSchema } from '../collector/collector.js';
import { localDate } from '../common/calendar.js';
import { processConfigSchema } from '../common/cli.js';
import { describeConfig, loadConfig } from '../common/config.js';
import { Influxd } from '../common/dev/influxd.js';
import { freePort } from '../common/dev/ports.js';
import { SnmpSim } from '../common/dev/snmp-sim.js';
import type { Service } from '../common/lifecycle.js';
import { createLogger } from '../common/log.js';
import { influxConfigSchema, Storage } from '../common/storage/storage.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    'print-config': { type: 'boolean', default: false },
    'influx-port': { type: 'string', default: '18086' },
    classrooms: { type: 'string', default: '6' },
  },
});

const config = loadConfig(processConfigSchema({ influx: influxConfigSchema }), { file: values.config });
if (values['print-config']) {
  console.log(describeConfig(config));
  process.exit(0);
}
const log = createLogger('stack', { level: config.log.level === 'info' ? 'warn' : config.log.level });
const step = (s: string) => process.stdout.write(`• ${s}\n`);
const root = fileURLToPath(new URL('..', import.meta.url));
const varDir = `${root}var`;
mkdirSync(`${varDir}/influxdb`, { recursive: true });

const services: Service[] = [];
let stopping = false;
async function stopAll(code: number) {
  if (stopping) return;
  stopping = true;
  step('stopping…');
  for (const s of services.reverse())
    await s.stop().catch((err: unknown) => log.error({ err, service: s.name }));
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

try {
  step('InfluxDB (influxd 1.x, data in var/influxdb)');
  // Its own process group: Ctrl-C must reach us first, so the storage can flush into influxd before it stops.
  const influxd = new Influxd({
    dataDir: `${varDir}/influxdb`,
    port: Number(values['influx-port']),
    detached: true,
  });
  await influxd.start();
  services.push({ name: 'influxd', start: async () => {}, stop: () => influxd.stop() });
  const storage = new Storage({ ...config.influx, url: influxd.url }, { log });
  const info = await storage.start();
  services.push({ name: 'storage', start: async () => {}, stop: () => storage.stop() });

  step('MQTT broker (embedded aedes, deny by default)');
  const credentialsFile = `${varDir}/stack-credentials.yaml`;
  rmSync(credentialsFile, { force: true }); // fresh demo secrets each run; nothing else reads this file
  const store = new CredentialStore(credentialsFile);
  const collectorSecret = await store.add({ username: 'collector', role: 'collector' });
  const n = Math.max(1, Number(values.classrooms));
  const school = '3133000001';
  const devices: { device: string; secret: string }[] = [];
  for (let i = 1; i <= n; i++) {
    const device = `c${String(i).padStart(2, '0')}-ops`;
    devices.push({
      device,
      secret: await store.add({ username: `dev-${device}`, role: 'device', school, device }),
    });
  }
  const pollerSecret = await store.add({ username: 'poller', role: 'poller', schools: [school] });
  const apiCollectorSecret = await store.add({ username: 'api', role: 'collector' }); // subscribe-only
  const port = await freePort();
  const broker = new Broker(
    brokerConfigSchema.parse({ credentialsFile, listeners: [{ kind: 'tcp', host: '127.0.0.1', port }] }),
    { log },
  );
  await broker.start();
  services.push(broker);
  const url = `mqtt://127.0.0.1:${port}`;

  step('collector');
  const collector = new Collector(
    collectorConfigSchema.parse({
      mqtt: { url, username: 'collector', password: collectorSecret },
      metrics: { port: 0 },
    }),
    { log, storage },
  );
  await collector.start();
  services.push(collector);
  await collector.ready();

  step(
    `${n} simulated classrooms (agents with simulated displays, on 08–17 local time on weekdays; c01 idle, c02 faulty)`,
  );
  for (const [k, { device, secret }] of devices.entries()) {
    const i = k + 1;
    const agent = new ClassroomAgent(
      agentConfigSchema.parse({
        school,
        device,
        classroom: `c${String(i).padStart(2, '0')}`,
        region: '330000/330100/330106',
        kind: 'panel',
        intervalS: 5,
        mqtt: { url, username: `dev-${device}`, password: secret },
        spool: { dir: `${varDir}/stack-spool/${device}` },
        display: { source: 'simulated', idle: i === 1, faulty: i === 2, useShare: 1 },
      }),
      { log },
    );
    await agent.start();
    services.push(agent);
  }

  step('school router (a real SNMP agent on loopback, 100 Mbit/s uplink) and the SNMP poller');
  const router = await new SnmpSim({
    sysName: 'gw-3133000001',
    ifaces: [
      {
        index: 1,
        name: 'GigabitEthernet0/0/0',
        alias: '上联 城域网',
        highSpeedMbps: 100,
        operStatus: 1,
        inOctets: 0n,
        outOctets: 0n,
      },
      {
        index: 2,
        name: 'GigabitEthernet0/0/1',
        alias: '教学楼',
        highSpeedMbps: 1000,
        operStatus: 1,
        inOctets: 0n,
        outOctets: 0n,
      },
    ],
  }).start();
  services.push({ name: 'router', start: async () => {}, stop: () => router.stop() });
  // School-day traffic on the uplink: 20–80 % of 100 Mbit/s down, a tenth of that up, changing every second.
  const traffic = setInterval(() => {
    const down = BigInt(Math.round(((0.2 + 0.6 * Math.random()) * 100e6) / 8));
    router.advance(1, down, down / 10n);
    router.advance(2, down / 10n, down);
  }, 1_000);
  services.push({ name: 'traffic', start: async () => {}, stop: async () => clearInterval(traffic) });
  const poller = new Poller(
    pollerConfigSchema.parse({
      mqtt: { url, username: 'poller', password: pollerSecret },
      spool: { dir: `${varDir}/stack-spool/poller` },
      targets: [
        {
          device: 'gw-01',
          school,
          address: '127.0.0.1',
          port: router.port,
          community: 'public',
          uplink: 1,
          intervalS: 5,
        },
      ],
    }),
    { log },
  );
  await poller.start();
  services.push(poller);

  step('API (registry of the simulated school, the example 2026–2027 calendar, an admin token)');
  const registryFile = `${varDir}/stack-registry.json`;
  const tokensFile = `${varDir}/stack-api-tokens.json`;
  rmSync(registryFile, { force: true });
  rmSync(tokensFile, { force: true });
  const api = new ApiServer(
    apiConfigSchema.parse({
      port: 0,
      registryFile,
      tokensFile,
      mqtt: { url, username: 'api', password: apiCollectorSecret },
      rollup: { everyMs: 600_000 },
    }),
    { log, storage },
  );
  await api.registry.import([
    {
      name: 'stack-school.yaml',
      data: Buffer.from(
        stringify({
          regions: [
            { id: '330000', name: '浙江省', level: 'province' },
            { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
            { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
          ],
          schools: [
            {
              id: school,
              name: '模拟小学',
              region: '330106',
              area: 'urban',
              level: 'primary',
              classes: n + 2, // two classes without monitored equipment
              students: 45 * (n + 2),
              teachers: 3 * (n + 2),
              uplinkDevice: 'gw-01',
              uplinkInterface: 1,
            },
          ],
          classrooms: devices.map((_, k) => ({
            id: `c${String(k + 1).padStart(2, '0')}`,
            school,
            name: `${k + 1}班`,
          })),
          devices: [
            { id: 'gw-01', school, kind: 'router' },
            ...devices.map(({ device }, k) => ({
              id: device,
              school,
              classroom: `c${String(k + 1).padStart(2, '0')}`,
              kind: 'panel',
              batch: '2024-模拟-01',
            })),
          ],
        }),
      ),
    },
  ]);
  const adminToken = api.tokens.load().add('stack admin', 'admin').token;
  await api.start();
  services.push(api);

  console.log(`
API                    ${api.url}   (token: ${adminToken})
  curl -s -H 'authorization: Bearer ${adminToken}' ${api.url}/v1/schools
  curl -s -H 'authorization: Bearer ${adminToken}' '${api.url}/v1/attainment?period=${localDate(Date.now())}'
  curl -sN -H 'authorization: Bearer ${adminToken}' ${api.url}/v1/bandwidth/live
InfluxDB ${info.version}  ${influxd.url}  (database "${config.influx.database}")
MQTT broker            ${url}
collector metrics      http://127.0.0.1:${collector.metricsPort}/metrics
Try:  curl -s http://127.0.0.1:${collector.metricsPort}/metrics | grep cfm_collector
      curl -s '${influxd.url}/query?db=${config.influx.database}' --data-urlencode 'q=SELECT last(power) FROM display GROUP BY device'
      curl -s '${influxd.url}/query?db=${config.influx.database}' --data-urlencode "q=SELECT in_bps, util_in_pct FROM iface WHERE uplink = 'true' ORDER BY time DESC LIMIT 5"
Ctrl-C stops everything.
`);
  const summary = async () => {
    const rows = await storage.rows(
      `SELECT last(power) AS power, last(err_lamp) AS lamp FROM display WHERE school = '${school}' GROUP BY device`,
    );
    const c = collector.presence.counts();
    const s = collector.stats();
    const cells = rows.map(
      (r) => `${String(r.device).slice(0, 3)}:${r.power}${r.lamp === 'error' ? '!' : ''}`,
    );
    const [up] = await storage.rows(
      `SELECT last(in_bps) AS inb, last(out_bps) AS outb, last(util_in_pct) AS util FROM iface WHERE school = '${school}' AND uplink = 'true'`,
    );
    const mbps = (v: unknown) => (typeof v === 'number' ? (v / 1e6).toFixed(1) : '–');
    const pct = (v: unknown) => (typeof v === 'number' ? v.toFixed(0) : '–');
    const uplink = up ? `uplink ${mbps(up.inb)}↓/${mbps(up.outb)}↑ Mbit/s (${pct(up.util)} %)` : 'uplink –';
    process.stdout.write(
      `[${new Date().toLocaleTimeString()}] ${uplink}; online ${c.online}/${c.online + c.offline}, messages ${s.accepted} accepted, ${Object.values(s.rejected).reduce((a, b) => a + (b ?? 0), 0)} rejected; displays ${cells.join(' ')}\n`,
    );
  };
  setInterval(() => void summary().catch(() => {}), 10_000);
} catch (err) {
  console.error(`stack failed to start: ${(err as Error).message}`);
  await stopAll(1);
}
