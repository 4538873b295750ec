import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ExcelJS from 'exceljs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { API_SECTIONS, composeApiProcess } from '../../api/compose.js';
import type { ApiServer } from '../../api/server.js';
import { processConfigSchema } from '../../common/cli.js';
import { silentLogger } from '../../common/log.js';
import { endIdleImportWorker } from '../../common/registry/import-run.js';
import type { Storage } from '../../common/storage/storage.js';
import { CITY, CITY_CALENDAR } from '../helpers/city.js';
import { Influxd, testStorage } from '../helpers/influx.js';
import { devicesCsv, workbook } from '../helpers/xlsx.js';

/**
 * Issue #13: an import can no longer stall or exhaust the API. Each case runs against the API process as it
 * runs in production (ApiServer from its config, listening on loopback, a real InfluxDB behind /health), with
 * files generated here: zip bombs with real deflate data, a workbook whose zip directory lies, files over the
 * row and cell limits, formulas without values, and a city-sized import while /health is polled.
 */

const MiB = 1024 * 1024;
const influxd = new Influxd();
let storage: Storage;
let dir: string;
const servers: ApiServer[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-import-limits-'));
  writeFileSync(join(dir, 'calendar.yaml'), stringify({ calendars: [CITY_CALENDAR] }));
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'city' }).storage;
  await storage.start();
});
afterAll(async () => {
  for (const s of servers) await s.stop();
  endIdleImportWorker();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

interface Api {
  server: ApiServer;
  url: string;
  admin: string;
  post(path: string, body: Buffer | string, type?: string): Promise<{ status: number; body: Body }>;
}
interface Body {
  status: string;
  code?: string;
  message?: string;
  limit?: { name: string; value: number };
  issues?: { file: string; row?: number; column?: string; message: string }[];
  rows?: Record<string, number>;
  totals?: Record<string, number>;
}

/** An API process with its own registry (the fixture city) and the given `api:` settings. */
async function startApi(name: string, api: Record<string, unknown> = {}): Promise<Api> {
  const registryFile = join(dir, `${name}-registry.json`);
  writeFileSync(join(dir, `${name}-city.yaml`), stringify(CITY));
  // As `npm run api -- run` composes it: the API with alerting (whose silences route has a body limit too).
  const { server } = composeApiProcess(
    'all',
    processConfigSchema(API_SECTIONS).parse({
      api: {
        host: '127.0.0.1',
        port: 0,
        registryFile,
        tokensFile: join(dir, `${name}-tokens.json`),
        calendarFile: join(dir, 'calendar.yaml'),
        preloadDays: 0,
        ...api,
      },
      rollup: { enabled: false },
      alerts: { stateFile: join(dir, `${name}-alerts.json`) },
    }),
    silentLogger(),
    { storage },
  );
  await server.registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  await server.start();
  servers.push(server);
  const admin = server.tokens.add('装备中心', 'admin').token;
  server.tokens.load();
  const url = server.url;
  return {
    server,
    url,
    admin,
    async post(path, body, type = 'application/octet-stream') {
      const r = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': type },
        body,
      });
      return { status: r.status, body: (await r.json()) as Body };
    },
  };
}

/** The highest RSS of this process while `f` runs, above what it was before (sampled every 10 ms). */
async function rssGrowth<T>(f: () => Promise<T>): Promise<{ result: T; growthMb: number }> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  try {
    const result = await f();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, growthMb: (peak - before) / MiB };
  } finally {
    clearInterval(sampler);
  }
}

/** The import worker processes of this process (Linux), with their peak RSS. */
function importWorkers(): { pid: number; peakMb: number }[] {
  let pids: string[];
  try {
    pids = execFileSync('pgrep', ['-P', String(process.pid), '-f', 'import-worker'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when none
  }
  return pids.map((pid) => {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { pid: Number(pid), peakMb: Number(hwm?.[1] ?? 0) / 1024 };
  });
}

/** A sheet part of `bytes` bytes of rows, deflated as repeated blocks: a few KB per GB. */
const bombPart = (mb: number, declaredSize?: number) => ({
  data: { chunk: Buffer.from('<row r="2"><c r="A2"><v>1</v></c></row>'.repeat(26_215)), times: mb },
  ...(declaredSize !== undefined ? { declaredSize } : {}),
});

describe('a workbook that inflates beyond api.import.maxInflatedBytes', () => {
  let api: Api;
  beforeAll(async () => {
    api = await startApi('bomb');
  });

  it('a zip bomb (3 MB inflating to 1 GB) is refused with 413 from its zip directory, before inflating', async () => {
    const bomb = workbook([{ name: 'devices', part: bombPart(1024) }]);
    expect(bomb.length).toBeLessThan(4 * MiB);
    const version = api.server.registry.version;
    const t = performance.now();
    const { result: r, growthMb } = await rssGrowth(() =>
      api.post('/v1/registry/import?filename=city.xlsx', bomb),
    );
    expect(r.status, JSON.stringify(r.body)).toBe(413);
    expect(r.body).toMatchObject({
      code: 'CFM_API_TOO_LARGE',
      limit: { name: 'api.import.maxInflatedBytes', value: 256 * MiB },
    });
    expect(r.body.message).toMatch(
      /city\.xlsx: its zip directory declares more than 268435456 bytes inflated .*api\.import\.maxInflatedBytes = 268435456/,
    );
    expect(performance.now() - t).toBeLessThan(5_000); // no inflating: the directory is all it reads
    expect(growthMb).toBeLessThan(150); // inflating it would take 1,024 MB
    expect(api.server.registry.version).toBe(version);
  });

  it('a zip directory that understates a part (10 KB declared, 1 GB inside) is caught while inflating', async () => {
    endIdleImportWorker(); // a fresh worker, so its peak memory is this import's
    const liar = workbook([{ name: 'devices', part: bombPart(1024, 10_240) }]);
    const r = await api.post('/v1/registry/import?filename=liar.xlsx', liar);
    expect(r.status, JSON.stringify(r.body)).toBe(413);
    expect(r.body).toMatchObject({
      code: 'CFM_API_TOO_LARGE',
      limit: { name: 'api.import.maxInflatedBytes', value: 256 * MiB },
    });
    expect(r.body.message).toMatch(
      /liar\.xlsx: xl\/worksheets\/sheet1\.xml inflates to more than the 10240 bytes its zip directory declares/,
    );
    // The worker inflated at most what was declared: its peak is its own start-up, far from 1 GB.
    const workers = importWorkers();
    expect(workers).toHaveLength(1);
    expect(workers[0]!.peakMb).toBeLessThan(400);
    const health = await fetch(`${api.url}/health`);
    expect(health.status).toBe(200);
  });
});

describe('rows and cells', () => {
  let api: Api;
  beforeAll(async () => {
    api = await startApi('rows', { import: { maxRows: 1_000, maxCells: 10_000 } });
  });

  it('more rows than api.import.maxRows is a 422 naming the limit; nothing changes', async () => {
    const version = api.server.registry.version;
    const r = await api.post('/v1/registry/import?filename=devices.csv', devicesCsv(1_001, 'A'), 'text/csv');
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({
      code: 'CFM_API_IMPORT_LIMIT',
      limit: { name: 'api.import.maxRows', value: 1_000 },
    });
    expect(r.body.message).toMatch(
      /devices\.csv: more than 1000 rows in this import; the limit is api\.import\.maxRows = 1000/,
    );
    expect(api.server.registry.version).toBe(version);
    // At the limit it imports.
    const ok = await api.post('/v1/registry/import?filename=devices.csv', devicesCsv(1_000, 'A'), 'text/csv');
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.rows).toMatchObject({ devices: 1_000 });
  });

  it('a sheet row reaching column XFD counts 16,384 cells: over api.import.maxCells, a 422', async () => {
    const wide = workbook([
      {
        name: 'devices',
        part: {
          data: Buffer.from(
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>' +
              '<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c></row>' +
              '<row r="2"><c r="XFD2"><v>1</v></c></row></sheetData></worksheet>',
          ),
        },
      },
    ]);
    const r = await api.post('/v1/registry/import?filename=wide.xlsx', wide);
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body).toMatchObject({
      code: 'CFM_API_IMPORT_LIMIT',
      limit: { name: 'api.import.maxCells', value: 10_000 },
    });
    expect(r.body.message).toMatch(/wide\.xlsx \[devices\]: more than 10000 cells/);
  });
});

describe('formulas', () => {
  it('a formula cell without a computed value is refused naming the sheet, row, column and cell', async () => {
    const api = await startApi('formula');
    const wb = new ExcelJS.Workbook();
    const ws = wb.addWorksheet('设备');
    ws.addRow(['设备编号', '学校标识码', '设备类型', '序列号']);
    ws.addRow(['pn-a9', 'A', '交互式一体机', { formula: 'CONCAT("SN-",A2)', result: 'SN-pn-a9' }]);
    ws.addRow(['pn-a10', 'A', '交互式一体机', { formula: 'CONCAT("SN-",A3)' }]); // as a script writes it
    const r = await api.post(
      '/v1/registry/import?filename=设备.xlsx',
      Buffer.from(await wb.xlsx.writeBuffer()),
    );
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.code).toBe('CFM_API_IMPORT_REJECTED');
    expect(r.body.issues).toEqual([
      {
        file: '设备.xlsx [设备]',
        entity: 'devices',
        row: 3,
        column: 'D (序列号)',
        message:
          'cell D3 holds the formula =CONCAT("SN-",A3) without a computed value: open and save the file in Excel or WPS, or paste the values',
      },
    ]);
    // With the value computed, the formula's result is what is imported.
    ws.getCell('D3').value = { formula: 'CONCAT("SN-",A3)', result: 'SN-pn-a10' };
    const ok = await api.post(
      '/v1/registry/import?filename=设备.xlsx',
      Buffer.from(await wb.xlsx.writeBuffer()),
    );
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(api.server.registry.index.device('A', 'pn-a10')?.serial).toBe('SN-pn-a10');
  });
});

describe('body limits', () => {
  let api: Api;
  beforeAll(async () => {
    api = await startApi('body', { bodyLimitBytes: 4 * MiB });
  });

  it('a 30 MB JSON body to POST /v1/silences is refused with 413 before it is parsed', async () => {
    const huge = JSON.stringify({ minutes: 60, comment: 'x'.repeat(30 * MiB) });
    const r = await api.post('/v1/silences', huge, 'application/json');
    expect(r.status).toBe(413);
    expect(r.body).toMatchObject({
      code: 'CFM_API_TOO_LARGE',
      limit: { name: 'the body limit of POST /v1/silences', value: 64 * 1024 },
    });
    // An ordinary silence still goes through.
    const ok = await api.post(
      '/v1/silences',
      JSON.stringify({ minutes: 60, school: 'A', comment: '机房断电检修' }),
      'application/json',
    );
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
  });

  it('an import file over api.bodyLimitBytes is refused with 413 naming it; under it, a large body is fine', async () => {
    const big = devicesCsv(60_000, 'A'); // ~4.5 MB
    expect(big.length).toBeGreaterThan(4 * MiB);
    const r = await api.post('/v1/registry/import?filename=devices.csv', big, 'text/csv');
    expect(r.status).toBe(413);
    expect(r.body).toMatchObject({
      code: 'CFM_API_TOO_LARGE',
      limit: { name: 'api.bodyLimitBytes', value: 4 * MiB },
    });
    const ok = await api.post(
      '/v1/registry/import?filename=devices.csv',
      devicesCsv(20_000, 'A'),
      'text/csv',
    );
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
  });
});

describe('off the event loop', () => {
  it('a city-sized import (100,000 devices) leaves /health answering within 1 s; a second import gets 409', async () => {
    const api = await startApi('city');
    const csv = devicesCsv(100_000, 'A');
    const latencies: number[] = [];
    let importing = true;
    const poll = (async () => {
      while (importing) {
        const t = performance.now();
        const r = await fetch(`${api.url}/health`, { signal: AbortSignal.timeout(5_000) });
        await r.json();
        latencies.push(performance.now() - t);
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    const first = api.post('/v1/registry/import?filename=devices.csv', csv, 'text/csv');
    // Once the first is running, another is refused at once rather than queued.
    const deadline = Date.now() + 10_000;
    while (!api.server.registry.busy && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const second = await api.post(
      '/v1/registry/import?filename=devices.csv',
      devicesCsv(10, 'B'),
      'text/csv',
    );
    expect(second.status).toBe(409);
    expect(second.body).toMatchObject({
      code: 'CFM_API_IMPORT_BUSY',
      message: 'another registry import is running; retry when it has finished',
    });
    const r = await first;
    importing = false;
    await poll;
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.totals).toMatchObject({ devices: 100_000 + CITY.devices.length });
    expect(latencies.length).toBeGreaterThanOrEqual(5);
    expect(Math.max(...latencies)).toBeLessThan(1_000);
  });

  it('an import over api.import.timeoutMs or api.import.maxHeapMb is stopped with 413; the API goes on', async () => {
    const slow = await startApi('slow', { import: { timeoutMs: 1_000 } });
    const r = await slow.post(
      '/v1/registry/import?filename=devices.csv',
      devicesCsv(100_000, 'A'),
      'text/csv',
    );
    expect(r.status, JSON.stringify(r.body)).toBe(413);
    expect(r.body).toMatchObject({
      code: 'CFM_API_TOO_LARGE',
      limit: { name: 'api.import.timeoutMs', value: 1_000 },
    });
    expect(r.body.message).toMatch(/devices\.csv: not imported within 1000 ms \(stopped; nothing changed\)/);

    const small = await startApi('heap', { import: { maxHeapMb: 64 } });
    const ok = await small.post('/v1/registry/import?filename=devices.csv', devicesCsv(10, 'B'), 'text/csv');
    expect(ok.status, JSON.stringify(ok.body)).toBe(200); // the worker runs in 64 MB…
    const big = await small.post(
      '/v1/registry/import?filename=devices.csv',
      devicesCsv(100_000, 'A'),
      'text/csv',
    );
    expect(big.status, JSON.stringify(big.body)).toBe(413); // …but 100,000 rows need more
    expect(big.body).toMatchObject({
      code: 'CFM_API_TOO_LARGE',
      limit: { name: 'api.import.maxHeapMb', value: 64 },
    });
    expect(big.body.message).toMatch(/importing needed more than 64 MB of memory/);
    expect(importWorkers()).toEqual([]); // killed, not left behind
    // This process is fine, and the next import gets a new worker.
    expect((await fetch(`${small.url}/health`)).status).toBe(200);
    const again = await small.post(
      '/v1/registry/import?filename=devices.csv',
      devicesCsv(10, 'C'),
      'text/csv',
    );
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(small.server.registry.index.device('C', 'dev-9')).toBeDefined();
    expect(slow.server.registry.index.data.devices).toHaveLength(CITY.devices.length);
  });
});

describe('npm run api -- import', () => {
  const run = promisify(execFile);
  /** The real CLI (tsx), with a config file; returns its exit code and stderr. */
  async function cli(file: string, api: Record<string, unknown>): Promise<{ code: number; stderr: string }> {
    const config = join(dir, 'cli.yaml');
    writeFileSync(
      config,
      stringify({
        influx: { url: influxd.url, database: 'city' },
        api: { registryFile: join(dir, 'cli-registry.json'), ...api },
      }),
    );
    try {
      const r = await run('node', ['--import', 'tsx', 'api/main.ts', 'import', file, '--config', config], {
        cwd: new URL('../..', import.meta.url).pathname,
      });
      return { code: 0, stderr: r.stderr };
    } catch (e) {
      const x = e as { code: number; stderr: string };
      return { code: x.code, stderr: x.stderr };
    }
  }

  it('refuses a zip bomb and too many rows with the same messages and exit code 2', async () => {
    writeFileSync(join(dir, 'bomb.xlsx'), workbook([{ name: 'devices', part: bombPart(1024) }]));
    const bomb = await cli(join(dir, 'bomb.xlsx'), {});
    expect(bomb.code).toBe(2);
    expect(bomb.stderr).toMatch(
      /import refused, nothing changed: bomb\.xlsx: its zip directory declares more than 268435456 bytes inflated .*the limit is api\.import\.maxInflatedBytes = 268435456/,
    );
    writeFileSync(join(dir, 'regions.csv'), 'id,name,level\n330000,浙江省,province\n330100,杭州市,city\n');
    const rows = await cli(join(dir, 'regions.csv'), { import: { maxRows: 1 } });
    expect(rows.code).toBe(2);
    expect(rows.stderr).toMatch(
      /regions\.csv: more than 1 rows in this import; the limit is api\.import\.maxRows = 1/,
    );
    const size = await cli(join(dir, 'bomb.xlsx'), { bodyLimitBytes: 1_024 });
    expect(size.code).toBe(2);
    expect(size.stderr).toMatch(
      /bomb\.xlsx: the file is \d+ bytes, more than 1024; the limit is api\.bodyLimitBytes = 1024/,
    );
  }, 60_000);
});
