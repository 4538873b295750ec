// npm run bench:api [-- --scale quarter|city|province-slice] [--schools N --classrooms N --days 30 --clients 50
//   --seconds 10 --rollup-city]
//
// --scale sets --schools/--classrooms (explicit ones win): quarter = 400 schools / 7,500 classrooms (~11,700
// devices, a quarter of the city); city = 1,600 / 30,000 (~47,000 devices, the default); province-slice =
// 3,200 / 60,000 (~94,000 devices, a fifth of a province of ~470,000 — what this 2-core machine's influxd holds
// in memory while writing 30 days of rollups in a few minutes; a whole province does not fit).
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
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ApiServer, apiConfigSchema, loadCalendars } from '../api/server.js';
import { dateOf, dayNumber, localMidnightMs } from '../common/calendar.js';
import { silentLogger } from '../common/log.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import type { AnyPoint } from '../contracts/influx.js';
import type { Registry } from '../contracts/registry.js';
import { Influxd } from '../dev/influxd.js';
import { rollupConfigSchema } from '../rollup/config.js';
import { type DeviceDay, Rollup, usagePoints } from '../rollup/rollup.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';
import { buildCity, rawBucketPoints, rawBuckets, rng } from './fixtures.js';
import { cpuSeconds, settled } from './snmp-peers.js';

const { values } = benchArgs('bench:api', {
  options: {
    scale: { type: 'string', default: 'city' },
    schools: { type: 'string' },
    classrooms: { type: 'string' },
    days: { type: 'string', default: '30' },
    clients: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    'influx-dir': { type: 'string' }, // keep influxd's data there (for looking at it afterwards)
    // Also roll up one day of raw readings for every school of the fixture (the "city-day"); without it the
    // city-day is derived from the county-day by devices, and printed as derived.
    'rollup-city': { type: 'boolean', default: false },
  },
});
const SCALES: Record<string, { schools: number; classrooms: number }> = {
  quarter: { schools: 400, classrooms: 7_500 },
  city: { schools: 1_600, classrooms: 30_000 },
  'province-slice': { schools: 3_200, classrooms: 60_000 },
};
const scale = SCALES[values.scale];
if (!scale) {
  console.error(`bench:api: --scale ${values.scale}: expected one of ${Object.keys(SCALES).join(', ')}`);
  process.exit(2);
}
const SCHOOLS = numberArg('bench:api', 'schools', values.schools ?? scale.schools);
const CLASSROOMS = numberArg('bench:api', 'classrooms', values.classrooms ?? scale.classrooms);
/** Classroom devices of a province (docs/deploy-scale-out.md): the basis of the rollup extrapolation. */
const PROVINCE_DEVICES = 470_000;
const DAYS = numberArg('bench:api', 'days', values.days);
const CLIENTS = numberArg('bench:api', 'clients', values.clients);
const SECONDS = numberArg('bench:api', 'seconds', values.seconds);
const CALENDAR = new URL('../deploy/examples/calendar-2026-2027.yaml', import.meta.url).pathname;
const FROM = '2026-10-12';
const TO = dateOf(dayNumber(FROM) + DAYS - 1);
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

const influxd = await new Influxd(values['influx-dir'] ? { dataDir: values['influx-dir'] } : {}).start();
const dir = benchTempDir('cfm-bench-api-');
const log = silentLogger();
const storage = new Storage(
  // A query timeout of 2 minutes, not 10 s: on a loaded 2-core machine one day of a city's rollups can take
  // longer to read, and the cold request would then be a 503, not a figure.
  influxConfigSchema.parse({
    url: influxd.url,
    database: 'city',
    batchSize: 5_000,
    flushIntervalMs: 200,
    timeoutMs: 120_000,
  }),
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
  const apiConfig = () =>
    apiConfigSchema.parse({
      port: 0,
      registryFile: regFile,
      tokensFile: join(dir, 'tokens.json'),
      calendarFile: CALENDAR,
      preloadDays: 0, // measure the cold first request honestly
      rateLimit: { max: 1_000_000 },
      // The fixture's registry is imported through the API's import worker; on a loaded 2-core machine a
      // province-slice (or a city) takes longer than the default 120 s.
      import: { timeoutMs: 900_000 },
    });
  api = new ApiServer(apiConfig(), { log, storage });
  await api.registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(city)) }]);
  const token = api.tokens.load().add('bench', 'admin').token;
  await api.start();
  const attainment = `/v1/attainment?period=${FROM}..${TO}`;

  // A cold start meets a database that is idle; right after the fixture's writes influxd is still snapshotting
  // and compacting them, and that CPU is not the request's. Wait until it has settled (under 5 % of a core for
  // a second, at most 3 minutes) and say how long that took.
  const idleS = await settled(influxd.pid!, 180);
  // The first request loads the period's rollups from InfluxDB (later ones within the cache TTL do not).
  const rssBeforeMb = process.memoryUsage().rss / 2 ** 20;
  const influxCpu0 = cpuSeconds(influxd.pid!);
  const apiCpu0 = process.cpuUsage();
  const t = performance.now();
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
  const apiCpu = process.cpuUsage(apiCpu0);
  const coldBody = text;
  const coldApiCpuS = (apiCpu.user + apiCpu.system) / 1e6;
  const coldInfluxCpuS = cpuSeconds(influxd.pid!) - influxCpu0;
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
  // After warm-up: the period's days cached, 50 clients served. The API runs in this process, so this is the
  // bench process (the fixture's registry included; its points are gone) — the figure before the first request
  // is printed beside it.
  const rssWarmMb = process.memoryUsage().rss / 2 ** 20;

  // A restart: a new API (nothing cached) against the same, now settled influxd — what a cold start in service
  // meets. Same request; the answer must be the same.
  await api.stop();
  const idleAgainS = await settled(influxd.pid!, 180);
  api = new ApiServer(apiConfig(), { log, storage });
  await api.start();
  const [i1, c1, t1] = [cpuSeconds(influxd.pid!), process.cpuUsage(), performance.now()];
  const again = await fetch(`${api.url}${attainment}`, { headers: { authorization: `Bearer ${token}` } });
  const againText = await again.text();
  const restartMs = performance.now() - t1;
  const c2 = process.cpuUsage(c1);
  const restartApiCpuS = (c2.user + c2.system) / 1e6;
  const restartInfluxCpuS = cpuSeconds(influxd.pid!) - i1;
  const same = (x: string) => JSON.stringify((JSON.parse(x) as { rollups: unknown }).rollups);
  if (again.status !== 200 || same(againText) !== same(coldBody))
    throw new Error(`the restarted API answered differently: ${again.status} ${againText.slice(0, 300)}`);
  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
  };
  const line = (name: string, x: typeof att) =>
    `${name}: p50 ${q(x.latenciesMs, 50).toFixed(1)} ms, p95 ${q(x.latenciesMs, 95).toFixed(1)} ms, p99 ${q(x.latenciesMs, 99).toFixed(1)} ms (${fmt(x.latenciesMs.length / x.seconds)} req/s, ${x.errors} errors)`;

  // The rollup job on one day of raw readings for a county's schools, and (--rollup-city) for every school.
  const { RegistryIndex } = await import('../common/registry/store.js');
  const rollupOf = async (schools: Registry['schools'], date: string) => {
    const ids = new Set(schools.map((s) => s.id));
    const devices = city.devices.filter((d) => d.kind !== 'router' && ids.has(d.school));
    const day = cal.day(date);
    let points = 0;
    // Written a bucket at a time: a city-day of raw readings does not fit in memory as one array.
    for (const ts of rawBuckets(day.periods)) {
      const raw = rawBucketPoints(ts, schools, devices);
      storage.write(raw);
      await storage.flush();
      points += raw.length;
    }
    const reg = {
      ...city,
      schools,
      classrooms: city.classrooms.filter((c) => ids.has(c.school)),
      devices: city.devices.filter((d) => ids.has(d.school)),
    };
    const cpu0 = process.cpuUsage();
    const icpu0 = cpuSeconds(influxd.pid!);
    const t0 = performance.now();
    const res = await new Rollup({
      storage,
      registry: () => new RegistryIndex(reg),
      calendars: () => calendars,
      log,
      bucketS: 300,
      readsInFlight: rollupConfigSchema.parse({}).readsInFlight, // as the scheduled job reads
    }).day(date);
    const cpu = process.cpuUsage(cpu0);
    return {
      res,
      points,
      s: (performance.now() - t0) / 1000,
      cpuS: (cpu.user + cpu.system) / 1e6,
      influxCpuS: cpuSeconds(influxd.pid!) - icpu0,
    };
  };
  const county = await rollupOf(
    city.schools.filter((s) => s.region === '330101'),
    '2026-11-20',
  );
  // Another teaching day, so the city-day reads no readings of the county-day's.
  const whole = values['rollup-city'] ? await rollupOf(city.schools, '2026-11-19') : undefined;

  console.log(
    `api bench: a city of ${fmt(SCHOOLS)} schools, ${fmt(city.classrooms.length)} classrooms, ${fmt(city.devices.length)} devices; ${DAYS} days (${teaching.length} teaching days) of rollups = ${fmt(written)} points (written in ${writeS.toFixed(0)} s; influxd settled ${idleS.toFixed(0)} s later); influxd ${info.version}`,
  );
  console.log(
    `city attainment ${attainment}: first request ${fmt(coldMs)} ms (cold: reads ${DAYS} days of rollups from InfluxDB into memory; \`api.preloadDays\` does this at start); CPU: API ${coldApiCpuS.toFixed(1)} s, influxd ${coldInfluxCpuS.toFixed(1)} s (target for the full city: ≤ 3 s; growth from quarter to city ≤ 4.5×)`,
  );
  console.log(
    `  again after an API restart (nothing cached; influxd settled ${idleAgainS.toFixed(0)} s before): ${fmt(restartMs)} ms; CPU: API ${restartApiCpuS.toFixed(1)} s, influxd ${restartInfluxCpuS.toFixed(1)} s`,
  );
  console.log(`${CLIENTS} concurrent clients, ${SECONDS} s per route, in a separate process:`);
  console.log(line('  health (floor)  ', health));
  console.log(line('  city attainment ', att));
  console.log(`  target: city attainment p95 ≤ 100 ms`);
  const perDevice = (x: NonNullable<typeof whole>) => x.s / x.res.devices;
  const rollLine = (what: string, x: NonNullable<typeof whole>) =>
    `rollup job, one teaching day of raw readings, ${what} (${fmt(x.res.schools)} schools, ${fmt(x.res.devices)} devices, ${fmt(x.points)} points, ${x.res.windows} period windows): ${x.s.toFixed(1)} s (CPU: rollup ${x.cpuS.toFixed(1)} s, influxd ${x.influxCpuS.toFixed(1)} s)`;
  console.log(rollLine('one county — measured', county));
  if (whole) console.log(rollLine(`the whole fixture, ${values.scale} — measured`, whole));
  else
    console.log(
      `rollup job, the whole fixture (${fmt(SCHOOLS)} schools, ${fmt(city.devices.length - SCHOOLS)} classroom devices): ${(perDevice(county) * (city.devices.length - SCHOOLS)).toFixed(1)} s — derived from the county-day by devices, not measured (--rollup-city measures it)`,
    );
  const basis = whole ?? county;
  console.log(
    `province-day (≈ ${fmt(PROVINCE_DEVICES)} devices) extrapolated linearly by devices from the ${whole ? 'measured whole-fixture day' : 'measured county-day'}: ${((perDevice(basis) * PROVINCE_DEVICES) / 60).toFixed(1)} min (target ≤ 5 min)`,
  );
  console.log(
    `API process RSS: ${fmt(rssBeforeMb)} MB before the first request, ${fmt(rssWarmMb)} MB after warm-up (the bench runs the API in its own process; the fixture's registry is included in both)`,
  );
} finally {
  await api?.stop();
  await storage.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
}
