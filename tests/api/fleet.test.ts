import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import ExcelJS from 'exceljs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState, type UplinkLive } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import { testApp } from '../helpers/api.js';
import { CITY, CITY_CALENDAR } from '../helpers/city.js';
import { testStorage } from '../helpers/influx.js';

/**
 * Fleet routes the console reads beyond the basics of tests/api/app.test.ts: the uplink file of `/v1/schools`
 * (the 网络 export). Live state set directly (no broker), no database: these routes read neither.
 */
let dir: string;
let app: Awaited<ReturnType<typeof testApp>>;
let admin: string;
let county: string;
const live = new LiveState(undefined, silentLogger());
// 2026-10-12 10:30:05 in China.
const T = Date.UTC(2026, 9, 12, 2, 30, 5);

function uplink(school: string, device: string, u: Partial<UplinkLive>): void {
  const reading: UplinkLive = {
    school,
    device,
    ifname: 'GigabitEthernet0/0/1',
    inBps: 20e6,
    outBps: 1e6,
    speedMbps: 1000,
    operStatus: 'up',
    tsMs: T,
    receivedAtMs: T,
    state: 'up',
    stateSinceMs: T - 3_600_000,
    unreachableSinceMs: null,
    ...u,
  };
  live.uplinks.set(school, new Map([[device, reading]]));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-fleet-'));
  const registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  const tokens = new TokenStore(join(dir, 'tokens.json')).load();
  admin = tokens.add('装备中心', 'admin').token;
  county = tokens.add('西湖区电教馆', 'ops', '330000/330100/330106').token;
  app = await testApp({
    registry,
    calendars: new Calendars([CITY_CALENDAR]),
    tokens,
    // Never started: these routes do not read the database.
    storage: testStorage('http://127.0.0.1:9').storage,
    live,
  });
  // A: up at 20 % of its 100 Mbit/s contract; B: stale (its last reading an hour old); C: down.
  uplink('A', 'gw-a', {});
  uplink('B', 'gw-b', { state: 'stale', inBps: 9.5e6, speedMbps: 10, tsMs: T - 3_600_000 });
  uplink('C', 'gw-c', { state: 'down', operStatus: 'down', inBps: 0, outBps: 0, stateSinceMs: T - 60_000 });
});
afterAll(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

const parseCsv = (body: string): string[][] => parse(body, { bom: true });
const get = (url: string, token: string) =>
  app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });

describe('the uplink file (/v1/schools?format=csv|xlsx, the console 网络 export)', () => {
  it('CSV: every school in scope, down and stale first, Chinese labels beside codes, names, China Standard Time', async () => {
    const r = await get('/v1/schools?format=csv&pageSize=1', admin);
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(r.headers['content-disposition']).toMatch(
      /^attachment; filename="uplinks_\d{4}-\d\d-\d\d_\d{4}\.csv"$/,
    );
    const [head, ...rows] = parseCsv(r.body);
    const col = (row: string[], h: string) => row[head!.indexOf(h)];
    expect(head).toEqual([
      '学校标识码',
      '学校名称',
      '区域代码',
      '区域',
      '出口状态',
      '出口状态代码',
      '利用率%',
      '下行Mbps',
      '上行Mbps',
      '出口带宽Mbps',
      '带宽来源',
      '带宽来源代码',
      '出口设备',
      '端口',
      '端口状态',
      '端口状态代码',
      '读数时间（北京时间）',
      '状态起始（北京时间）',
      '设备总数',
      '在线设备',
      '离线设备',
      '状态未知设备',
    ]);
    // Not paginated: all three, C (down) first, then B (stale), then A.
    expect(rows.map((x) => [x[0], x[1], x[3], col(x, '出口状态'), col(x, '出口状态代码')])).toEqual([
      ['C', '滨江区实验初中', '滨江区', '中断', 'down'],
      ['B', '转塘教学点', '西湖区', '无数据', 'stale'],
      ['A', '西湖区第一小学', '西湖区', '正常', 'up'],
    ]);
    const a = rows[2]!;
    expect(col(a, '区域代码')).toBe('330000/330100/330106');
    expect(col(a, '利用率%')).toBe('20');
    expect(col(a, '下行Mbps')).toBe('20');
    expect(col(a, '出口带宽Mbps')).toBe('100');
    expect([col(a, '带宽来源'), col(a, '带宽来源代码')]).toEqual(['签约带宽', 'contract']);
    expect([col(a, '端口状态'), col(a, '端口状态代码')]).toEqual(['正常', 'up']);
    expect(col(a, '读数时间（北京时间）')).toBe('2026-10-12 10:30:05');
    expect(col(a, '状态起始（北京时间）')).toBe('2026-10-12 09:30:05');
    expect([col(a, '设备总数'), col(a, '在线设备'), col(a, '状态未知设备')]).toEqual(['4', '0', '4']);
    expect([col(rows[0]!, '端口状态'), col(rows[0]!, '端口状态代码')]).toEqual(['中断', 'down']);
    expect(col(rows[1]!, '读数时间（北京时间）')).toBe('2026-10-12 09:30:05');
  });

  it('a school without any reading is 未监测 with no code, last; a county token gets its county only', async () => {
    live.uplinks.delete('A');
    try {
      const [head, ...rows] = parseCsv((await get('/v1/schools?format=csv', county)).body);
      const i = head!.indexOf('出口状态');
      // A stale row keeps its last reading's figures (as in JSON), dated by 读数时间.
      expect(rows.map((x) => [x[0], x[i], x[i + 1], x[i + 2]])).toEqual([
        ['B', '无数据', 'stale', '95'],
        ['A', '未监测', '', ''],
      ]);
    } finally {
      uplink('A', 'gw-a', {});
    }
  });

  it('XLSX: the sheet 学校出口 and the notes 说明 (scope, what the states mean, when made)', async () => {
    const r = await get('/v1/schools?format=xlsx&region=330106', admin);
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-disposition']).toMatch(/filename="uplinks_.*\.xlsx"/);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(r.rawPayload as unknown as ArrayBuffer);
    const ws = wb.getWorksheet('学校出口')!;
    expect(ws.getRow(2).getCell(1).value).toBe('B');
    expect(ws.getRow(3).getCell(1).value).toBe('A');
    expect(ws.getRow(3).getCell(7).value).toBe(20);
    const notes = Object.fromEntries(
      wb
        .getWorksheet('说明')!
        .getSheetValues()
        .filter(Boolean)
        .map((row) => [(row as string[])[1], (row as string[])[2]]),
    );
    expect(notes.范围).toBe('西湖区（330000/330100/330106）');
    expect(notes.出口状态).toContain('超过 180 秒（api.live.staleAfterS）没有读数');
    expect(notes.生成时间).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d（北京时间）$/);
  });

  it('JSON stays paginated, and a bad format is a 400 naming it', async () => {
    const r = await get('/v1/schools?pageSize=1', admin);
    expect(r.json()).toMatchObject({ total: 3, items: [{ id: 'A' }] });
    const bad = await get('/v1/schools?format=pdf', admin);
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'CFM_API_BAD_REQUEST', field: 'format' });
  });
});

describe('/v1/classrooms: classrooms found by name, with their school and devices', () => {
  const find = async (query: string, token = admin) => {
    const r = await get(`/v1/classrooms?${query}`, token);
    expect(r.statusCode, r.body).toBe(200);
    return r.json() as {
      total: number;
      items: { id: string; name: string; school: string; schoolName: string; devices: { id: string }[] }[];
    };
  };
  const ids = (b: { items: { school: string; id: string }[] }) => b.items.map((c) => `${c.school}/${c.id}`);

  it('a part of a classroom name finds it, with its school, region and devices (teaching display first)', async () => {
    // An empty search is no search: every classroom in scope, as without `q`.
    expect((await find('q=')).total).toBe((await find('')).total);
    const b = await find(`q=${encodeURIComponent('一(2)')}`);
    expect(b).toEqual({
      total: 1,
      items: [
        {
          id: 'A2',
          name: '一(2)班',
          isClass: true,
          school: 'A',
          schoolName: '西湖区第一小学',
          region: '330000/330100/330106',
          devices: [{ id: 'pn-a2', kind: 'panel' }],
        },
      ],
    });
    // A room with two devices: its teaching display (the panel) first, then the teacher PC.
    expect((await find(`q=${encodeURIComponent('一(1)班')}`)).items[0]!.devices.map((d) => d.id)).toEqual([
      'pn-a1',
      'pc-a1',
    ]);
  });

  it('full-width and half-width alike; several words narrow by school; a school name alone finds no room', async () => {
    expect(ids(await find(`q=${encodeURIComponent('一（2）班')}`))).toEqual(['A/A2']);
    expect(ids(await find(`q=${encodeURIComponent('班')}`))).toEqual([
      'A/A1',
      'A/A2',
      'B/B1',
      'B/B2',
      'C/C1',
    ]);
    expect(ids(await find(`q=${encodeURIComponent('第一小学 一(')}`))).toEqual(['A/A1', 'A/A2']);
    expect(ids(await find(`q=${encodeURIComponent('实验初中 班')}`))).toEqual(['C/C1']);
    expect((await find(`q=${encodeURIComponent('西湖区第一小学')}`)).total).toBe(0);
    expect(ids(await find('q=a-LAB'))).toEqual(['A/A-lab']);
  });

  it("in scope only: a county token finds its county's rooms; another county's school is a 404", async () => {
    expect(ids(await find(`q=${encodeURIComponent('班')}`, county))).toEqual([
      'A/A1',
      'A/A2',
      'B/B1',
      'B/B2',
    ]);
    expect(ids(await find(`q=${encodeURIComponent('复式')}&school=B`, county))).toEqual(['B/B1', 'B/B2']);
    expect((await get('/v1/classrooms?school=C', county)).statusCode).toBe(404);
    expect((await get('/v1/classrooms?region=330108', county)).statusCode).toBe(403);
  });

  it('is in the OpenAPI document with its parameters', async () => {
    const doc = (await app.inject({ url: '/openapi.json' })).json();
    expect(doc.paths['/v1/classrooms'].get.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['q', 'school', 'region', 'page', 'pageSize']),
    );
    expect(doc.paths['/v1/schools'].get.parameters.map((p: { name: string }) => p.name)).toContain('format');
  });

  it('without q: every room of the school, paginated; a q longer than 64 is a 400 naming it', async () => {
    const all = await find('school=A&pageSize=2&page=2');
    expect(all.total).toBe(3);
    expect(ids(all)).toEqual(['A/A2']);
    const long = await get(`/v1/classrooms?q=${'班'.repeat(65)}`, admin);
    expect(long.statusCode).toBe(400);
    expect(long.json()).toMatchObject({ code: 'CFM_API_BAD_REQUEST', field: 'q' });
  });
});
