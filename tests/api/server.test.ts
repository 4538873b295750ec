import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { API_SECTIONS, composeApiProcess } from '../../api/compose.js';
import type { ApiServer } from '../../api/server.js';
import { processConfigSchema } from '../../common/cli.js';
import { silentLogger } from '../../common/log.js';
import type { Storage } from '../../common/storage/storage.js';
import { CITY, CITY_CALENDAR, writeCity } from '../helpers/city.js';
import { Influxd, testStorage, waitFor } from '../helpers/influx.js';

const run = promisify(execFile);
const influxd = new Influxd();
let storage: Storage;
let dir: string;
let server: ApiServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-api-server-'));
  writeFileSync(join(dir, 'calendar.yaml'), stringify({ calendars: [CITY_CALENDAR] }));
  writeFileSync(join(dir, 'city.yaml'), stringify(CITY));
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'city' }).storage;
  await storage.start();
  await writeCity(storage);
});
afterAll(async () => {
  await server?.stop();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** `npm run api -- …` as an operator runs it (tsx, the real CLI), with a config file in the temp folder. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const config = join(dir, 'api.yaml');
  writeFileSync(
    config,
    stringify({
      influx: { url: influxd.url, database: 'city' },
      api: {
        registryFile: join(dir, 'registry.json'),
        tokensFile: join(dir, 'tokens.json'),
        calendarFile: join(dir, 'calendar.yaml'),
      },
    }),
  );
  try {
    const r = await run('node', ['--import', 'tsx', 'api/main.ts', ...args, '--config', config], {
      cwd: new URL('../..', import.meta.url).pathname,
    });
    return { code: 0, ...r };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe('the api process and its tools', () => {
  it('imports a registry and refuses a bad one with file, row and column, exit code 2', async () => {
    const ok = await cli('import', join(dir, 'city.yaml'));
    expect(ok.code, ok.stderr).toBe(0);
    writeFileSync(
      join(dir, 'schools.csv'),
      'id,name,region,area,level,classes,students,teachers\nX,某校,330106,郊区,小学,3,1,1\n',
    );
    const bad = await cli('import', join(dir, 'schools.csv'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/schools\.csv, row 2, column D \(area\): "郊区" is not one of urban/);
    expect(JSON.parse(readFileSync(join(dir, 'registry.json'), 'utf8')).schools).toHaveLength(3);
  }, 60_000);

  it('adds a token (printed once, stored hashed) and refuses a bad scope', async () => {
    const add = await cli(
      'tokens',
      'add',
      '西湖区教育局',
      '--role',
      'auditor',
      '--scope',
      '330000/330100/330106',
    );
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout.trim()).toMatch(/^cfm_[A-Za-z0-9_-]{43}$/);
    expect(readFileSync(join(dir, 'tokens.json'), 'utf8')).not.toContain(add.stdout.trim().slice(4));
    const bad = await cli('tokens', 'add', 'x', '--role', 'auditor', '--scope', '330000/../x');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--scope must be a region path/);
  }, 60_000);

  it('runs: rolls up on start, serves reports, health and metrics', async () => {
    // The process `npm run api -- run` starts (role all): the API with the rollups and alerting.
    server = composeApiProcess(
      'all',
      processConfigSchema(API_SECTIONS).parse({
        api: {
          port: 0,
          registryFile: join(dir, 'registry.json'),
          tokensFile: join(dir, 'tokens.json'),
          calendarFile: join(dir, 'calendar.yaml'),
        },
        // A week's window: the points at Sunday 11 October cover ISO week 41, which the API is asked for below.
        rollup: { lateDays: 3, attainmentWindowDays: 7 },
        alerts: { stateFile: join(dir, 'alerts.json') },
      }),
      silentLogger(),
      // "Now" is the Sunday after the fixture week: the run rolls up Thu 8 … Sat 10 and Sunday so far.
      { storage, now: () => Date.parse('2026-10-11T12:00:00+08:00') },
    ).server;
    await server.start();
    const token = server.tokens.add('ops', 'ops').token;
    server.tokens.load();
    // The first run is over once it says so (the last thing it does, after the figures' caches were told of
    // the new days and attainment_day written). Its rollup_day markers alone are not enough: they are in
    // InfluxDB a moment before the run invalidates the days the API may have loaded while it was rolling up.
    await waitFor(
      async () =>
        /cfm_api_rollup_last_success_seconds \d{10}/.test(
          await (await fetch(`${server.url}/metrics`)).text(),
        ),
      { timeoutMs: 30_000, what: 'the first rollup run to finish' },
    );
    expect(await storage.rows('SELECT count(devices) AS n FROM rollup_day')).toMatchObject([{ n: 4 }]);
    const res = await fetch(`${server.url}/v1/attainment/schools?period=2026-W41`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      items: { id: string; xxt: { attained: boolean }; bbt: { classes: number; attained: number } }[];
    };
    expect(body.items.map((s) => [s.id, s.xxt.attained])).toEqual([
      ['A', true],
      ['B', false],
      ['C', false],
    ]);
    // The same figures as points for dashboards: per school, profile and day (here the week to Sunday).
    await waitFor(
      async () =>
        (await storage.rows("SELECT count(classes) AS n FROM attainment_day WHERE profile = 'cn-2020'"))[0]
          ?.n === 12, // 3 schools × 4 days
      { timeoutMs: 30_000 },
    );
    const points = await storage.rows(
      "SELECT xxt, classes, classes_attained, window_days, school_name, region_name, area FROM attainment_day WHERE profile = 'cn-2020' AND time = '2026-10-10T16:00:00Z' GROUP BY school",
    );
    expect(points.map((p) => [p.school, p.xxt, p.classes, p.classes_attained, p.window_days]).sort()).toEqual(
      body.items.map((s) => [s.id, s.xxt.attained ? 1 : 0, s.bbt.classes, s.bbt.attained, 7]),
    );
    expect(points[0]).toMatchObject({
      region_name: '西湖区',
      area: expect.stringMatching(/^(urban|rural)$/),
    });
    expect(
      (await storage.rows('SHOW TAG VALUES FROM attainment_day WITH KEY = profile')).map((r) => r.value),
    ).toEqual(['cn-2017', 'cn-2020', 'gigabit']);
    const health = (await (await fetch(`${server.url}/health`)).json()) as { status: string };
    expect(health).toMatchObject({ status: 'ok', mqtt: { configured: false } });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(
      /cfm_api_request_duration_seconds_count\{route="\/v1\/attainment\/schools",status="200"\} 1/,
    );
    expect(metrics).toMatch(/cfm_api_rollup_last_success_seconds \d{10}/);
    expect(metrics).toMatch(/cfm_api_rollup_days_loaded \d+/);
  }, 60_000);
});
