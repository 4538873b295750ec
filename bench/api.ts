// npm run bench:api [-- --schools 1600 --classrooms 30000 --days 30 --clients 50 --seconds 10]
//
// A city of 1,600 schools and 30,000 classrooms with 30 days of data in a real influxd; the API (its own
// process code, in this process) answers the city attainment request under 50 concurrent clients running in a
// separate process; in the same run the API's health route under the same load is the floor. Prints
// p50/p95/p99 of each. Target: p95 ≤ 100 ms for the city attainment.
//
// The data is the rollup job's output (usage_day, uplink_day: one point per device or school per teaching day),
// written directly: 30 days of raw 5-minute readings for 46,000 devices would be ~400 million points. The
// rollup job itself is measured on one day of raw readings for a slice of the city (printed).
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { ApiServer, apiConfigSchema, loadCalendars } from '../api/server.js';
import { dateOf, dayNumber, localMidnightMs } from '../common/calendar.js';
import { silentLogger } from '../common/log.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import type { AnyPoint } from '../contracts/influx.js';
import type { Registry } from '../contracts/registry.js';
import { Influxd } from '../dev/influxd.js';
import { type DeviceDay, Rollup, usagePoints } from '../rollup/rollup.js';
import { buildCity, rawDayPoints, rng } from './fixtures.js';

const { values } = parseArgs({
  options: {
    schools: { type: 'string', default: '1600' },
    classrooms: { type: 'string', default: '30000' },
    days: { type: 'string', default: '30' },
    clients: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    'influx-dir': { type: 'string' }, // keep influxd's data there (for looking at it afterwards)
  },
});
const SCHOOLS = Number(values.schools);
const CLASSROOMS = Number(values.classrooms);
const DAYS = Number(values.days);
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const CALENDAR = new URL('../deploy/examples/calendar-2026-2027.yaml', import.meta.url).pathname;
const FROM = '2026-10-12';
const TO = dateOf(dayNumber(FROM) + DAYS - 1);
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

const influxd = await new Influxd(values['influx-dir'] ? { dataDir: values['influx-dir'] } : {}).start();
const dir = mkdtempSync(join(tmpdir(), 'cfm-bench-api-'));
const log = silentLogger();
const storage = new Storage(
  influxConfigSchema.parse({ url: influxd.url, database: 'city', batchSize: 5_000, flushIntervalMs: 200 }),
  { log },
);
let api: ApiServer | undefined;
try {
  const info = await storage.start();
  const city = buildCity(SCHOOLS, CLASSROOMS);
  const calendars = loadCalendars(CALENDAR);
  const cal = calendars.get('zj-2026-2027')!;
  const teaching = cal.teachingDays(FROM, TO);
  const r = rng(7);
  const path = (county: string) => `330000/330100/${county}`;
  const regionOf = new Map(city.schools.map((s) => [s.id, path(s.region)]));
  const devicesOf = new Map<string, Registry['devices']>();
  for (const d of city.devices) {
    if (d.kind === 'router') continue;
    const list = devicesOf.get(d.school) ?? [];
    list.push(d);
    devicesOf.set(d.school, list);
  }
  const t0 = performance.now();
  let written = 0;
  for (const day of teaching) {
    const ts = localMidnightMs(day.date);
    const pts: AnyPoint[] = [];
    const buckets = day.periods.length * 8;
    for (const s of city.schools) {
      const up = buckets - (r() < 0.05 ? Math.floor(r() * 20) : 0);
      pts.push({
        measurement: 'uplink_day',
        tags: { region: path(s.region), school: s.id },
        fields: {
          bucket_s: 300,
          teaching_b: buckets,
          data_b: up,
          up_b: up,
          over50_b: Math.floor(r() * 12),
          over60_b: Math.floor(r() * 8),
          over70_b: Math.floor(r() * 5),
          over80_b: Math.floor(r() * 4),
          over90_b: Math.floor(r() * 2),
          p95_util_pct: 40 + r() * 55,
          speed_mbps: 1000,
        },
        ts,
      });
    }
    // What the rollup job writes for each school (rollup/rollup.ts usagePoints), from made-up day figures.
    for (const s of city.schools) {
      const rows: DeviceDay[] = [];
      for (const d of devicesOf.get(s.id) ?? []) {
        const online = r() < 0.9 ? buckets - Math.floor(r() * 8) : 0;
        const use = Math.floor(online * r());
        rows.push({
          device: d.id,
          classroom: d.classroom,
          kind: d.kind,
          teaching: buckets,
          online,
          on: online,
          use,
          faulty: r() < 0.03 ? Math.floor(online / 3) : 0,
          periods: day.periods.length,
          periodsUsed: Math.min(day.periods.length, Math.floor(use / 4)),
          unused: online - use,
          leftOn: Math.floor(r() * 24),
          activity: online,
        });
      }
      pts.push(...usagePoints(ts, 300, regionOf.get(s.id)!, s.id, rows));
    }
    pts.push({
      measurement: 'rollup_day',
      tags: {},
      fields: { devices: city.devices.length, schools: SCHOOLS, duration_ms: 0, bucket_s: 300 },
      ts,
    });
    storage.write(pts);
    await storage.flush();
    written += pts.length;
  }
  const writeS = (performance.now() - t0) / 1000;

  // The API, as `npm run api -- run` builds it (rollup schedule off: the data is already rolled up).
  const regFile = join(dir, 'registry.json');
  api = new ApiServer(
    apiConfigSchema.parse({
      port: 0,
      registryFile: regFile,
      tokensFile: join(dir, 'tokens.json'),
      calendarFile: CALENDAR,
      preloadDays: 0, // measure the cold first request honestly
      rateLimit: { max: 1_000_000 },
    }),
    { log, storage },
  );
  await api.registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(city)) }]);
  const token = api.tokens.load().add('bench', 'admin').token;
  await api.start();
  const attainment = `/v1/attainment?period=${FROM}..${TO}`;

  // The first request loads the period's rollups from InfluxDB (later ones within the cache TTL do not).
  let t = performance.now();
  const first = await fetch(`${api.url}${attainment}`, { headers: { authorization: `Bearer ${token}` } });
  const text = await first.text();
  const body = JSON.parse(text) as {
    rollups: {
      region: string;
      split: string;
      schools: number;
      classes: number;
      xxtPct: number;
      bbtPct: number;
    }[];
  };
  const coldMs = performance.now() - t;
  const cityRow = body.rollups?.find((x) => x.region === '330000/330100' && x.split === 'all');
  if (first.status !== 200 || !cityRow || cityRow.schools !== SCHOOLS)
    throw new Error(`bad answer: ${first.status} ${text.slice(0, 300)}`);

  // Load: a separate process with CLIENTS concurrent keep-alive clients, SECONDS per route.
  const run = (route: string) =>
    new Promise<{ latenciesMs: number[]; errors: number; seconds: number }>((resolve, reject) => {
      const child = fork(new URL('./api-load.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] });
      child.once('message', (m) => {
        child.kill();
        resolve(m as { latenciesMs: number[]; errors: number; seconds: number });
      });
      child.once('error', reject);
      child.send({ url: `${api!.url}${route}`, token, clients: CLIENTS, seconds: SECONDS });
    });
  const health = await run('/health');
  const att = await run(attainment);
  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
  };
  const line = (name: string, x: typeof att) =>
    `${name}: p50 ${q(x.latenciesMs, 50).toFixed(1)} ms, p95 ${q(x.latenciesMs, 95).toFixed(1)} ms, p99 ${q(x.latenciesMs, 99).toFixed(1)} ms (${fmt(x.latenciesMs.length / x.seconds)} req/s, ${x.errors} errors)`;

  // The rollup job on one day of raw readings for a slice of the city (a county's schools).
  const slice = city.schools.filter((s) => s.region === '330101');
  const sliceDevices = city.devices.filter(
    (d) => d.kind !== 'router' && slice.some((s) => s.id === d.school),
  );
  const day = cal.day('2026-11-20');
  const raw = rawDayPoints(day.periods, slice, sliceDevices);
  storage.write(raw);
  await storage.flush();
  const sliceReg = {
    ...city,
    schools: slice,
    classrooms: city.classrooms.filter((c) => slice.some((s) => s.id === c.school)),
    devices: city.devices.filter((d) => slice.some((s) => s.id === d.school)),
  };
  const { RegistryIndex } = await import('../common/registry/store.js');
  t = performance.now();
  const res = await new Rollup({
    storage,
    registry: () => new RegistryIndex(sliceReg),
    calendars: () => calendars,
    log,
    bucketS: 300,
  }).day('2026-11-20');
  const rollupS = (performance.now() - t) / 1000;

  console.log(
    `api bench: a city of ${fmt(SCHOOLS)} schools, ${fmt(city.classrooms.length)} classrooms, ${fmt(city.devices.length)} devices; ${DAYS} days (${teaching.length} teaching days) of rollups = ${fmt(written)} points (written in ${writeS.toFixed(0)} s); influxd ${info.version}`,
  );
  console.log(
    `city attainment ${attainment}: first request ${fmt(coldMs)} ms (cold: reads ${DAYS} days of rollups from InfluxDB into memory; \`api.preloadDays\` does this at start)`,
  );
  console.log(`${CLIENTS} concurrent clients, ${SECONDS} s per route, in a separate process:`);
  console.log(line('  health (floor)  ', health));
  console.log(line('  city attainment ', att));
  console.log(`  target: city attainment p95 ≤ 100 ms`);
  console.log(
    `rollup job: one teaching day of raw readings for one county (${res.schools} schools, ${res.devices} devices, ${fmt(raw.length)} points, ${res.windows} period windows) in ${rollupS.toFixed(1)} s`,
  );
} finally {
  await api?.stop();
  await storage.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
}
