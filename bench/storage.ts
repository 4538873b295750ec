// npm run bench:storage [-- --points 200000]
// Writes the same points to the same real influxd twice: through the storage layer (typed points →
// line protocol → WriteApi, gzip, batching) and as raw line protocol in 5,000-line POSTs to /write.
// Prints both rates and their ratio; each rate is "until all points are queryable".
import { silentLogger } from '../common/log.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { toLine } from '../common/storage/line-protocol.js';
import { Storage } from '../common/storage/storage.js';
import type { AnyPoint } from '../contracts/influx.js';
import { Influxd } from '../dev/influxd.js';
import { benchArgs, numberArg } from './args.js';
import { waitForCount, writeRawLines } from './fixtures.js';

const { values } = benchArgs('bench:storage', { options: { points: { type: 'string', default: '200000' } } });
const N = numberArg('bench:storage', 'points', values.points);

function makePoints(n: number, t0: number): AnyPoint[] {
  const out: AnyPoint[] = [];
  for (let i = 0; i < n; i++) {
    const school = `31330${String(i % 1600).padStart(5, '0')}`;
    out.push({
      measurement: 'host',
      tags: {
        region: '330000/330100/330106',
        school,
        classroom: `c${i % 20}`,
        device: `d${i % 30_000}`,
        kind: 'panel',
      },
      fields: {
        uptime_s: 3600 + i,
        cpu_pct: (i % 1000) / 10,
        mem_used_pct: 55.5,
        mem_total_bytes: 8_589_934_592,
      },
      ts: t0 + Math.floor(i / 30_000) * 10_000 + (i % 30_000),
    });
  }
  return out;
}

const influxd = await new Influxd().start();
try {
  const points = makePoints(N, Date.UTC(2026, 10, 23));

  // Reference: raw line protocol, 5,000 lines per POST, sequential.
  const lines = points.map((p) => toLine(p)!);
  let t = performance.now();
  await writeRawLines(influxd, 'raw', lines);
  await waitForCount(influxd, 'raw', 'host', 'uptime_s', N);
  const rawS = (performance.now() - t) / 1000;

  // Storage layer: serialise from typed points and write through the WriteApi.
  const storage = new Storage(
    influxConfigSchema.parse({ url: influxd.url, database: 'layer', flushIntervalMs: 100 }),
    {
      log: silentLogger(),
    },
  );
  await storage.start();
  t = performance.now();
  for (let i = 0; i < points.length; i += 1_000) storage.write(points.slice(i, i + 1_000));
  await storage.drain(600_000);
  await waitForCount(influxd, 'layer', 'host', 'uptime_s', N);
  const layerS = (performance.now() - t) / 1000;
  await storage.stop();

  // Serialisation alone.
  t = performance.now();
  let bytes = 0;
  for (const p of points) bytes += toLine(p)!.length;
  const serS = (performance.now() - t) / 1000;

  const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
  console.log(`storage bench: ${fmt(N)} points, influxd ${storage.server?.version}`);
  console.log(`raw line protocol (5,000-line POSTs): ${fmt(N / rawS)} points/s`);
  console.log(`storage layer (typed points, WriteApi): ${fmt(N / layerS)} points/s`);
  console.log(`ratio storage/raw: ${(rawS / layerS).toFixed(2)}`);
  console.log(`serialise only: ${fmt(N / serS)} points/s (${fmt(bytes / N)} bytes/line)`);
} finally {
  await influxd.dispose();
}
