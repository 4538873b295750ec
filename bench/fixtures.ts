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
