// npm run bench:rollup [-- --schools 1600 --classrooms 30000 --scale county,city]
//
// The rollup job (rollup/rollup.ts) on one teaching day of raw readings in a real influxd: bench:api's city
// (1,600 schools, ~47,000 devices) with a reading per 5-minute bucket of every class period from every display,
// teacher PC and school router (bench/fixtures.ts rawDayPoints). Rolls up that day for one county's schools and
// for the whole city, each timed: wall time, and the CPU-seconds influxd and this process spent on it (the
// figures to trust on a shared machine). Then the province-day (≈ 470,000 devices) extrapolated linearly in
// devices from the city-day, with its basis. Target (#18): a province-day ≤ 5 min.
//
// Each roll starts once influxd has settled after the writes (under 5 % of a core for a second, at most 3 min;
// printed): its snapshotting and compaction of what was just written is not the rollup's cost.
//
// Also the scheduled job's steady state (rollup/service.ts): a run rolls up today and `lateDays` finished days
// every `everyMs`; printed is what one more run over the same, already rolled-up day costs.
import { loadavg } from 'node:os';
import { loadCalendars } from '../api/server.js';
import { silentLogger } from '../common/log.js';
import { RegistryIndex } from '../common/registry/store.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import type { Registry } from '../contracts/registry.js';
import { Influxd } from '../dev/influxd.js';
import { rollupConfigSchema } from '../rollup/config.js';
import { Rollup } from '../rollup/rollup.js';
import { benchArgs, numberArg } from './args.js';
import { buildCity, rawDayPoints } from './fixtures.js';
import { cpuSeconds, settled } from './snmp-peers.js';

const { values } = benchArgs('bench:rollup', {
  options: {
    schools: { type: 'string', default: '1600' },
    classrooms: { type: 'string', default: '30000' },
    scale: { type: 'string', default: 'county,city' },
  },
});
const SCHOOLS = numberArg('bench:rollup', 'schools', values.schools);
const CLASSROOMS = numberArg('bench:rollup', 'classrooms', values.classrooms);
const SCALES = new Set(values.scale.split(','));
const PROVINCE_DEVICES = 470_000;
const DATE = '2026-11-20';
const CALENDAR = new URL('../deploy/examples/calendar-2026-2027.yaml', import.meta.url).pathname;
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

const influxd = await new Influxd().start();
const log = silentLogger();
const storage = new Storage(
  influxConfigSchema.parse({
    url: influxd.url,
    database: 'rollup',
    batchSize: 5_000,
    flushIntervalMs: 200,
    timeoutMs: 900_000, // a city-wide window query takes longer than the default 10 s on a loaded machine
  }),
  { log },
);
const influxCpu = () => cpuSeconds(influxd.pid!);
const ownCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Runs `fn`, returning its wall seconds and the CPU-seconds influxd and this process spent meanwhile. */
async function measured<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; wallS: number; influxS: number; ownS: number }> {
  const [w0, i0, o0] = [performance.now(), influxCpu(), ownCpu()];
  const result = await fn();
  return { result, wallS: (performance.now() - w0) / 1000, influxS: influxCpu() - i0, ownS: ownCpu() - o0 };
}

try {
  const info = await storage.start();
  const city = buildCity(SCHOOLS, CLASSROOMS);
  const calendars = loadCalendars(CALENDAR);
  const day = calendars.get('zj-2026-2027')!.day(DATE);
  console.log(
    `rollup bench: ${DATE}, ${day.periods.length} class periods; a city of ${fmt(SCHOOLS)} schools; influxd ${info.version}`,
  );
  const countySchools = city.schools.filter((s) => s.region === '330101');
  const inCounty = new Set(countySchools.map((s) => s.id));
  let rawPoints = 0;
  /** Writes the raw day of these schools' devices (bench/fixtures.ts rawDayPoints). */
  const writeRaw = (schools: Registry['schools']) =>
    measured(async () => {
      const ids = new Set(schools.map((s) => s.id));
      const raw = rawDayPoints(
        day.periods,
        schools,
        city.devices.filter((d) => d.kind !== 'router' && ids.has(d.school)),
      );
      rawPoints += raw.length;
      for (let i = 0; i < raw.length; i += 50_000) {
        storage.write(raw.slice(i, i + 50_000));
        await storage.flush();
      }
    });
  const sliceOf = (schools: Registry['schools']): Registry => {
    const ids = new Set(schools.map((s) => s.id));
    return {
      ...city,
      schools,
      classrooms: city.classrooms.filter((c) => ids.has(c.school)),
      devices: city.devices.filter((d) => ids.has(d.school)),
    };
  };
  const rollupOf = (reg: Registry) => {
    const index = new RegistryIndex(reg);
    // As the scheduled job builds it (rollup/service.ts): final windows kept between runs.
    return new Rollup({
      storage,
      registry: () => index,
      calendars: () => calendars,
      log,
      bucketS: 300,
      keep: { settleMs: 7_200_000 },
      readsInFlight: rollupConfigSchema.parse({}).readsInFlight,
    });
  };
  const line = (what: string, m: Awaited<ReturnType<typeof measured>>) =>
    `${what} in ${m.wallS.toFixed(1)} s (influxd ${m.influxS.toFixed(1)} CPU-s, rollup ${m.ownS.toFixed(1)} CPU-s)`;

  let cityDay: { wallS: number; influxS: number; ownS: number; devices: number } | undefined;
  // The county's raw day alone in the database first (as #18's county figure was measured), then the city's.
  const stages = [
    { scale: 'county', write: countySchools, roll: countySchools },
    { scale: 'city', write: city.schools.filter((s) => !inCounty.has(s.id)), roll: city.schools },
  ] as const;
  for (const { scale, write, roll } of stages) {
    const w = await writeRaw(write);
    if (!SCALES.has(scale)) continue;
    const idleS = await settled(influxd.pid!, 180);
    const rollup = rollupOf(sliceOf([...roll]));
    const first = await measured(() => rollup.day(DATE));
    const r = first.result;
    console.log(
      `${line(`rollup of one ${scale}-day (${fmt(r.schools)} schools, ${fmt(r.devices)} devices, ${fmt(rawPoints)} raw points in the database, written in ${w.wallS.toFixed(0)} s, influxd settled ${idleS.toFixed(0)} s later; ${r.windows} period windows)`, first)}; load ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    // The scheduled job's next run over the same day (today's next hour, or a finished day in `lateDays`).
    const again = await measured(() => rollup.day(DATE));
    console.log(
      `  ${line(`the same ${scale}-day again, no new data (a scheduled run's share: ${again.result.read} windows read, ${again.result.reused} reused)`, again)}`,
    );
    if (scale === 'city') cityDay = { ...first, devices: r.devices };
  }
  if (cityDay) {
    const f = PROVINCE_DEVICES / cityDay.devices;
    const s = cityDay.wallS * f;
    console.log(
      `province-day (≈ ${fmt(PROVINCE_DEVICES)} devices) extrapolated ≈ ${(s / 60).toFixed(1)} min = city-day ${cityDay.wallS.toFixed(1)} s × ${f.toFixed(1)} (linear in devices: ${fmt(PROVINCE_DEVICES)} / ${fmt(cityDay.devices)}); CPU ≈ influxd ${(cityDay.influxS * f).toFixed(0)} s + rollup ${(cityDay.ownS * f).toFixed(0)} s; target ≤ 5 min`,
    );
  }
} finally {
  await storage.stop();
  await influxd.dispose();
}
