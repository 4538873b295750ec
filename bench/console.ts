// npm run bench:console [-- --schools 1600 --runs 5]
//
// First paint of the console with a city of 1,600 schools (and 20 classrooms each), in Debian's Chromium
// (headless, playwright-core) against the API in this process over a real influxd with 6 hours of uplink
// readings: for the 网络 page (every school's uplink, sorted, with a sparkline each) and the 总览 page, the time
// from the API's last answer the page needs (its responseEnd) to the page painted with it (a mark the console
// sets a frame after rendering). Target: under 1 s. Also printed: the page's own main-thread time (Chromium's
// TaskDuration) and the API process's CPU per page load.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { stringify } from 'yaml';
import { ApiServer, apiConfigSchema } from '../api/server.js';
import { silentLogger } from '../common/log.js';
import { influxConfigSchema } from '../common/storage/config.js';
import { Storage } from '../common/storage/storage.js';
import type { AnyPoint } from '../contracts/influx.js';
import { planCity } from '../dev/city.js';
import { Influxd } from '../dev/influxd.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';

const { values } = benchArgs('bench:console', {
  options: { schools: { type: 'string', default: '1600' }, runs: { type: 'string', default: '5' } },
});
const SCHOOLS = numberArg('bench:console', 'schools', values.schools);
const RUNS = numberArg('bench:console', 'runs', values.runs);
const CALENDAR = new URL('../deploy/examples/calendar-2026-2027.yaml', import.meta.url).pathname;

const dir = benchTempDir('cfm-bench-console-');
const influxd = new Influxd();
let api: ApiServer | undefined;
let storage: Storage | undefined;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-sync',
  ],
});
try {
  await influxd.start();
  storage = new Storage(influxConfigSchema.parse({ url: influxd.url, database: 'bench_console' }), {
    log: silentLogger(),
  });
  await storage.start();
  const city = planCity({ schools: SCHOOLS, classrooms: 20 });
  // Six hours of uplink readings, one a minute per school (for the sparklines).
  const now = Date.now();
  const points: AnyPoint[] = [];
  for (const s of city.schools)
    for (let m = 360; m >= 0; m--) {
      const util = 20 + ((s.id.charCodeAt(s.id.length - 1) * 7 + m) % 70);
      points.push({
        measurement: 'iface',
        ts: now - m * 60_000,
        tags: { school: s.id, device: s.router, kind: 'router', ifname: 'Gi0/0/1', uplink: 'true' },
        fields: {
          in_bps: util * 1e6,
          out_bps: 1e6,
          util_in_pct: util,
          util_out_pct: 1,
          speed_mbps: 100,
          oper_up: 1,
        },
      } as AnyPoint);
    }
  for (let i = 0; i < points.length; i += 20_000) storage.write(points.slice(i, i + 20_000));
  await storage.flush();

  api = new ApiServer(
    apiConfigSchema.parse({
      port: 0,
      registryFile: join(dir, 'registry.json'),
      tokensFile: join(dir, 'tokens.json'),
      calendarFile: CALENDAR,
      preloadDays: 0,
      rateLimit: { max: 1_000_000 },
    }),
    { log: silentLogger(), storage },
  );
  await api.registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(city.registry)) }]);
  const token = api.tokens.load().add('bench', 'admin').token;
  await api.start();

  const measure = async (hash: string, mark: string, needs: RegExp) => {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on('response', (r) => {
      if (r.status() >= 500) process.stderr.write(`page: HTTP ${r.status()} ${r.url()}\n`);
    });
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    await page.goto(`${api!.url}/console/#token=${token}`);
    await page.goto(`${api!.url}/console/#/${hash}`);
    const cpu0 = process.cpuUsage();
    await page.reload();
    await page.waitForFunction((m) => performance.getEntriesByName(`cfm:${m}`).length > 0, mark, {
      timeout: 180_000,
    });
    const cpu = process.cpuUsage(cpu0);
    const t = await page.evaluate(
      ([m, re]) => {
        const painted = performance.getEntriesByName(`cfm:${m}`)[0]!.startTime;
        const answers = (
          performance.getEntriesByType('resource') as unknown as { name: string; responseEnd: number }[]
        ).filter((r) => new RegExp(re).test(r.name));
        return {
          painted,
          answered: Math.max(...answers.map((r) => r.responseEnd)),
          rows: (
            globalThis as unknown as { document: { querySelectorAll(s: string): { length: number } } }
          ).document.querySelectorAll('tbody tr').length,
        };
      },
      [mark, needs.source] as const,
    );
    const metrics = (await cdp.send('Performance.getMetrics')).metrics;
    const task = metrics.find((x) => x.name === 'TaskDuration')?.value ?? 0;
    await page.close();
    return {
      afterApiMs: t.painted - t.answered,
      rows: t.rows,
      taskS: task,
      apiCpuS: (cpu.user + cpu.system) / 1e6,
    };
  };

  for (const [name, hash, mark, needs] of [
    ['网络 (network)', 'network', 'network', /\/v1\/(schools|bandwidth\/history)/],
    ['总览 (overview)', 'overview', 'overview', /\/v1\/attainment/],
  ] as const) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await measure(hash, mark, needs));
    const after = runs.map((r) => r.afterApiMs).sort((a, b) => a - b);
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(
      `  ${name}: ${SCHOOLS} schools, ${runs[0]!.rows} rows; first paint after the API answered: median ${med(after).toFixed(0)} ms, max ${after[after.length - 1]!.toFixed(0)} ms (target < 1000 ms); page main thread ${med(runs.map((r) => r.taskS)).toFixed(2)} CPU-s per load; API ${med(runs.map((r) => r.apiCpuS)).toFixed(2)} CPU-s per load`,
    );
  }
} finally {
  await browser.close();
  await api?.stop();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
}
