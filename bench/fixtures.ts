import { encodePoint, LineBuffer } from '../common/storage/line-protocol.js';
import type { Storage } from '../common/storage/storage.js';
import type { AnyPoint } from '../contracts/influx.js';
import type { Telemetry } from '../contracts/messages.js';
import type { Registry } from '../contracts/registry.js';
import { buildTopic } from '../contracts/topics.js';
import type { Influxd } from '../dev/influxd.js';

/** Realistic classroom telemetry for benchmarks: device i % devices, ten seconds apart per device. */
export function makeTelemetry(i: number, devices: number, t0: number): Telemetry {
  const d = i % devices;
  const round = Math.floor(i / devices);
  const on = (d + round) % 3 !== 0;
  return {
    v: 1,
    ts: t0 + round * 10_000 + (d % 10_000),
    seq: round,
    kind: 'panel',
    classroom: classroomOf(d),
    host: {
      uptimeS: 3_600 + round * 10,
      cpuPct: (d * 7 + round) % 100,
      memUsedPct: 40 + (d % 50),
      memTotalBytes: 8_589_934_592,
      nics: [
        {
          name: 'Ethernet',
          rxBytes: String(1_000_000_000 + d * 1_000 + round * 250_000),
          txBytes: String(90_000_000 + round * 12_000),
          rxBps: 200_000 + (d % 1_000) * 100,
          txBps: 9_600,
        },
      ],
    },
    display: {
      source: 'pjlink',
      power: on ? 'on' : 'off',
      ...(on ? { input: '31', temperatureC: 40.5 } : {}),
      touchOk: true,
      lampHours: 1_000 + d,
      errors: { fan: 'ok', lamp: 'ok', temperature: 'ok', cover: 'ok', filter: 'ok', other: 'ok' },
    },
    inUse: on,
  };
}

const schoolOf = (d: number) => `31330${String(Math.floor(d / 40)).padStart(5, '0')}`;
const classroomOf = (d: number) => `c${String(d % 40).padStart(2, '0')}`;

export function topicFor(i: number, devices: number): string {
  const d = i % devices;
  return buildTopic({ school: schoolOf(d), device: `ops-${d}`, channel: 'telemetry' });
}

/** The registry of makeTelemetry's devices: 40 classrooms per school, one panel each, in one county. */
export function benchRegistry(devices: number): Registry {
  const reg: Registry = {
    regions: [
      { id: '330000', name: '省', level: 'province' },
      { id: '331300', name: '县', level: 'county', parent: '330000' },
    ],
    schools: [],
    classrooms: [],
    devices: [],
  };
  for (let d = 0; d < devices; d++) {
    const school = schoolOf(d);
    if (d % 40 === 0)
      reg.schools.push({
        id: school,
        name: school,
        region: '331300',
        area: 'urban',
        level: 'primary',
        classes: 40,
        students: 1_800,
        teachers: 120,
      });
    reg.classrooms.push({ id: classroomOf(d), school, name: classroomOf(d), isClass: true });
    reg.devices.push({ id: `ops-${d}`, school, classroom: classroomOf(d), kind: 'panel' });
  }
  return reg;
}

/** The reference write: raw line protocol, `batch` lines per POST to /write, sequentially. */
export async function writeRawLines(
  influxd: Influxd,
  db: string,
  lines: readonly string[],
  batch = 5_000,
): Promise<void> {
  await influxd.query(`CREATE DATABASE "${db}"`);
  for (let i = 0; i < lines.length; i += batch) {
    const r = await fetch(`${influxd.url}/write?db=${encodeURIComponent(db)}&precision=ms`, {
      method: 'POST',
      body: lines.slice(i, i + batch).join('\n'),
    });
    if (r.status !== 204) throw new Error(`raw write: ${r.status} ${await r.text()}`);
  }
}

/** Resolves once `SELECT count(field) FROM measurement` reaches n: "until queryable". */
export async function waitForCount(
  influxd: Influxd,
  db: string,
  measurement: string,
  field: string,
  n: number,
) {
  for (;;) {
    const r = (await influxd.query(`SELECT count(${field}) FROM ${measurement}`, db)) as {
      results: { series?: { values: number[][] }[] }[];
    };
    if ((r.results[0]?.series?.[0]?.values[0]?.[1] ?? 0) >= n) return;
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** A deterministic pseudo-random sequence (mulberry32), so every run builds the same city. */
export function rng(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The benchmarks' city (bench:api, bench:rollup): 13 counties, `SCHOOLS` schools spread over them, `CLASSROOMS`
 * classrooms spread over the schools; a display in every classroom, a teacher PC in every other one, a router per
 * school. Deterministic: every run builds the same city.
 */
export function buildCity(SCHOOLS: number, CLASSROOMS: number): Registry {
  const r = rng(42);
  const counties = Array.from({ length: 13 }, (_, i) => `3301${String(i + 1).padStart(2, '0')}`);
  const reg: Registry = {
    regions: [
      { id: '330000', name: '浙江省', level: 'province' },
      { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
      ...counties.map((id, i) => ({ id, name: `区县${i + 1}`, level: 'county' as const, parent: '330100' })),
    ],
    schools: [],
    classrooms: [],
    devices: [],
  };
  const levels = ['primary', 'primary', 'junior', 'senior', 'nine_year', 'teaching_point'] as const;
  let roomsLeft = CLASSROOMS;
  for (let s = 0; s < SCHOOLS; s++) {
    const id = `3301${String(s).padStart(6, '0')}`;
    const rooms =
      s === SCHOOLS - 1 ? roomsLeft : Math.max(1, Math.round((CLASSROOMS / SCHOOLS) * (0.5 + r())));
    roomsLeft -= rooms;
    const rural = r() < 0.35;
    reg.schools.push({
      id,
      name: `学校${s}`,
      region: counties[s % counties.length]!,
      area: rural ? 'rural' : 'urban',
      level: levels[s % levels.length]!,
      classes: rooms + (r() < 0.2 ? 2 : 0), // some classes without monitored equipment
      students: rooms * 45,
      teachers: rooms * 3,
      uplinkDevice: `gw-${id}`,
      uplinkInterface: 1,
      ...(r() < 0.5 ? { contractedMbps: [100, 200, 500, 1000][Math.floor(r() * 4)]! } : {}),
    });
    reg.devices.push({ id: `gw-${id}`, school: id, kind: 'router' });
    for (let c = 0; c < rooms; c++) {
      const room = `${id}-${c}`;
      reg.classrooms.push({ id: room, school: id, name: `${c + 1}班`, isClass: true });
      reg.devices.push({
        id: `dp-${room}`,
        school: id,
        classroom: room,
        kind: c % 3 === 0 ? 'projector' : 'panel',
        batch: `20${18 + (c % 6)}-批次-${s % 7}`,
      });
      if (c % 2 === 0)
        reg.devices.push({ id: `pc-${room}`, school: id, classroom: room, kind: 'teacher_pc' });
    }
  }
  return reg;
}

/**
 * One day of raw readings as the collector stores them, for the rollup benchmarks: in every class period, one
 * reading per 5-minute bucket (mid-bucket) from every display (on, in use in two buckets of three), teacher PC
 * (host) and school router (its uplink).
 */
export function rawDayPoints(
  periods: readonly { startMs: number; endMs: number }[],
  schools: readonly Registry['schools'][number][],
  devices: readonly Registry['devices'][number][],
): AnyPoint[] {
  return rawBuckets(periods).flatMap((ts) => rawBucketPoints(ts, schools, devices));
}

/** The readings' times of `rawDayPoints`: the middle of every 5-minute bucket of every period. */
export function rawBuckets(periods: readonly { startMs: number; endMs: number }[]): number[] {
  const out: number[] = [];
  for (const p of periods) for (let ts = p.startMs + 150_000; ts < p.endMs; ts += 300_000) out.push(ts);
  return out;
}

/** One bucket of `rawDayPoints` (a city-day written a bucket at a time does not need it all in memory). */
export function rawBucketPoints(
  ts: number,
  schools: readonly Registry['schools'][number][],
  devices: readonly Registry['devices'][number][],
): AnyPoint[] {
  const raw: AnyPoint[] = [];
  for (const d of devices) {
    if (d.kind === 'teacher_pc')
      raw.push({
        measurement: 'host',
        tags: { school: d.school, device: d.id, kind: d.kind },
        fields: { cpu_pct: 10 },
        ts,
      });
    else
      raw.push({
        measurement: 'display',
        tags: { school: d.school, device: d.id, kind: d.kind },
        fields: { on: 1, in_use: ts % 3 ? 1 : 0, error_count: 0 },
        ts,
      });
  }
  for (const s of schools)
    raw.push({
      measurement: 'iface',
      tags: { school: s.id, device: `gw-${s.id}`, kind: 'router', ifname: 'Gi0/0/1', uplink: 'true' },
      fields: { util_in_pct: 40, util_out_pct: 10, oper_up: 1, speed_mbps: 1000 },
      ts,
    });
  return raw;
}

/**
 * The storage of a collector with no database (`sink.storage`): each point serialised as the storage would, the
 * lines counted, and kept when asked (`keep`).
 */
export class LineSink {
  lines = 0;
  readonly kept: string[] = [];
  /** Encoded as the storage writer encodes them (into a buffer of lines), then forgotten. */
  private readonly out = new LineBuffer();
  constructor(private readonly keep = false) {}
  write(points: readonly AnyPoint[]): void {
    const out = this.out;
    for (const p of points) {
      if (out.at > 1 << 15) out.at = 0;
      const start = out.at;
      if (!encodePoint(p, out)) continue;
      this.lines++;
      if (this.keep) this.kept.push(out.buf.toString('utf8', start, out.at));
    }
  }
  get storage(): Storage {
    return this as unknown as Storage;
  }
}
