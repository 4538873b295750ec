import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { stringify } from 'yaml';
import { HISTORY_TTL_MS } from '../../api/routes/history.js';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { AnyPoint } from '../../contracts/influx.js';
import { testApp } from '../helpers/api.js';
import { CITY, CITY_CALENDAR } from '../helpers/city.js';
import { Influxd, testStorage } from '../helpers/influx.js';

/** The console's history routes over HTTP, on a real influxd: what belongs where, and nothing foreign. */
const influxd = new Influxd();
let dir: string;
let storage: Storage;
let app: Awaited<ReturnType<typeof testApp>>;
let admin: string;
let county: string;
const now = Date.now();

const iface = (school: string, device: string, ts: number, util: number): AnyPoint =>
  ({
    measurement: 'iface',
    ts,
    tags: { school, device, kind: 'router', ifname: 'Gi0/0/1', uplink: 'true' },
    fields: {
      in_bps: util * 1e6,
      out_bps: 1e6,
      util_in_pct: util,
      util_out_pct: 1,
      speed_mbps: 100,
      oper_up: 1,
    },
  }) as AnyPoint;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-history-'));
  const registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  const tokens = new TokenStore(join(dir, 'tokens.json')).load();
  admin = tokens.add('装备中心', 'admin').token;
  county = tokens.add('滨江区', 'ops', '330000/330100/330108').token;
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'history' }).storage;
  await storage.start();
  storage.write([
    iface('A', 'gw-a', now - 30 * 60_000, 40),
    iface('C', 'gw-c', now - 30 * 60_000, 95),
    // Uplink readings from devices that are not the school's uplink: never shown as its uplink.
    iface('A', 'gw-b', now - 30 * 60_000, 99),
    iface('A', 'invented', now - 30 * 60_000, 99),
    {
      measurement: 'display',
      ts: now - 2 * 3_600_000,
      tags: { school: 'A', device: 'pn-a2', kind: 'panel' },
      fields: { on: 1, in_use: 1, error_count: 0, power: 'on', lamp_hours: 1234 },
    } as AnyPoint,
  ]);
  await storage.flush();
  app = await testApp({
    registry,
    calendars: new Calendars([CITY_CALENDAR]),
    tokens,
    storage,
    live: new LiveState(undefined, silentLogger()),
  });
}, 60_000);
afterAll(async () => {
  await app?.close();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const get = async (token: string, url: string) => {
  const r = await app.inject({ url, headers: { authorization: `Bearer ${token}` } });
  return { status: r.statusCode, body: r.json() as Record<string, unknown> };
};

describe('the console history routes', () => {
  it("/v1/bandwidth/history: each school's own uplink only, in scope", async () => {
    const all = await get(admin, '/v1/bandwidth/history?hours=2&bucketS=600');
    expect(all.status).toBe(200);
    const items = all.body.items as { school: string; name: string; util: (number | null)[] }[];
    expect(items.map((i) => i.school)).toEqual(['A', 'C']);
    expect(items.find((i) => i.school === 'A')!.util.filter((u) => u !== null)).toEqual([40]);
    expect(items.find((i) => i.school === 'C')!.util.filter((u) => u !== null)).toEqual([95]);
    expect(items[0]!.util).toHaveLength(Math.ceil((now - (all.body.fromMs as number)) / 600_000));
    const mine = await get(county, '/v1/bandwidth/history?hours=2');
    expect((mine.body.items as { school: string }[]).map((i) => i.school)).toEqual(['C']);
    expect((await get(admin, '/v1/bandwidth/history?hours=100')).status).toBe(400);
    // A bucket size of its own for each request would be a full-city query each: only the listed sizes, and no
    // more buckets than a sparkline draws.
    expect((await get(admin, '/v1/bandwidth/history?hours=2&bucketS=601')).status).toBe(400);
    const many = await get(admin, '/v1/bandwidth/history?hours=48&bucketS=60');
    expect(many.status).toBe(400);
    expect(String(many.body.message)).toMatch(/at most 360 buckets/);
    expect((await get(admin, '/v1/bandwidth/history?hours=48&bucketS=600')).status).toBe(200);
  });

  it("/v1/devices/{school}/{device}/week: a registered device's buckets and lamp hours; another county's device is not found", async () => {
    const week = await get(admin, '/v1/devices/A/pn-a2/week');
    expect(week.status).toBe(200);
    expect(week.body).toMatchObject({
      school: 'A',
      device: 'pn-a2',
      classroomName: '一(2)班',
      lampHours: 1234,
    });
    const buckets = week.body.buckets as number[][];
    expect(buckets).toHaveLength(1);
    expect(buckets[0]!.slice(1)).toEqual([1, 1, 1, 0]);
    expect((await get(county, '/v1/devices/A/pn-a2/week')).status).toBe(404);
    expect((await get(admin, '/v1/devices/A/nope/week')).status).toBe(404);
  });
});

describe('/v1/bandwidth/history is kept for a minute, for every scope', () => {
  // Half past the hour (the data above lies within every window here), the clock stopped: no bucket boundary
  // falls between two requests by chance. Only Date is faked; the database is real.
  const T0 = Math.floor(now / 3_600_000) * 3_600_000 + 30 * 60_000 + 5_000;
  let queries: ReturnType<typeof vi.spyOn>;
  const schools = (b: Record<string, unknown>) => (b.items as { school: string }[]).map((i) => i.school);
  const at = (ms: number) => vi.setSystemTime(ms);
  afterEach(() => {
    queries?.mockRestore();
    vi.useRealTimers();
  });
  const start = () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    at(T0);
    queries = vi.spyOn(storage, 'query');
  };

  it('a second load inside the TTL does not query the database; after it, or for another window, one does', async () => {
    start();
    const first = await get(admin, '/v1/bandwidth/history?hours=3&bucketS=600');
    expect(queries).toHaveBeenCalledTimes(1);
    at(T0 + HISTORY_TTL_MS / 2);
    const second = await get(admin, '/v1/bandwidth/history?hours=3&bucketS=600');
    expect(queries).toHaveBeenCalledTimes(1);
    expect(second).toEqual(first);
    expect(schools(second.body)).toEqual(['A', 'C']);
    // Another window or bucket size is its own query.
    await get(admin, '/v1/bandwidth/history?hours=3&bucketS=300');
    await get(admin, '/v1/bandwidth/history?hours=4&bucketS=600');
    expect(queries).toHaveBeenCalledTimes(3);
    // Past the TTL (still in the same bucket), the database is asked again.
    at(T0 + HISTORY_TTL_MS + 1_000);
    await get(admin, '/v1/bandwidth/history?hours=3&bucketS=600');
    expect(queries).toHaveBeenCalledTimes(4);
  });

  it('loads at the same moment share one query', async () => {
    start();
    const all = await Promise.all([1, 2, 3].map(() => get(admin, '/v1/bandwidth/history?hours=5')));
    expect(queries).toHaveBeenCalledTimes(1);
    expect(all.map((r) => schools(r.body))).toEqual([
      ['A', 'C'],
      ['A', 'C'],
      ['A', 'C'],
    ]);
  });

  it("what is kept is no token's answer: each scope gets its own schools from it, in either order", async () => {
    start();
    // The county first: the admin after it still gets every school, not the county's answer.
    expect(schools((await get(county, '/v1/bandwidth/history?hours=6')).body)).toEqual(['C']);
    expect(schools((await get(admin, '/v1/bandwidth/history?hours=6')).body)).toEqual(['A', 'C']);
    // And the county after the admin gets its county only, not the admin's answer.
    expect(schools((await get(county, '/v1/bandwidth/history?hours=6')).body)).toEqual(['C']);
    expect(schools((await get(admin, '/v1/bandwidth/history?hours=6&region=330106')).body)).toEqual(['A']);
    expect(queries).toHaveBeenCalledTimes(1);
    // A county token asking for another county is refused, cached answer or not.
    expect((await get(county, '/v1/bandwidth/history?hours=6&region=330106')).status).toBe(403);
  });
});
