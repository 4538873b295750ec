import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
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
