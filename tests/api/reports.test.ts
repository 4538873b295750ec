import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import ExcelJS from 'exceljs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { DEFAULT_IDLE_DAYS, profileSchema } from '../../common/figures/profiles.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import { testApp } from '../helpers/api.js';
import { CITY, CITY_CALENDAR, cityRollup, writeCity } from '../helpers/city.js';
import { Influxd, testStorage } from '../helpers/influx.js';

/**
 * The report routes over HTTP on the fixture city (tests/helpers/city.ts), with one change: 滨江区 has its own
 * calendar without the make-up Saturday 10 October, so its week 41 has two teaching days, 西湖区's three. What the
 * definitions of api/README.md#definitions put into responses and files: nulls that pass the response schemas,
 * judged schools, coverage by the token's own calendars, the look-back date, the renamed per-class header.
 */
const influxd = new Influxd();
let storage: Storage;
let dir: string;
let registry: RegistryStore;
let tokens: TokenStore;
let app: Awaited<ReturnType<typeof testApp>>;
const T = { city: '', xihu: '', binjiang: '' };
const WEEK = '2026-10-05..2026-10-11';
const calendars = new Calendars([
  { ...CITY_CALENDAR, regions: ['330106'] },
  { ...CITY_CALENDAR, id: 'hz-binjiang', regions: ['330108'], makeUpDays: [] },
]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-reports-'));
  registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  tokens = new TokenStore(join(dir, 'tokens.json')).load();
  T.city = tokens.add('杭州市教育局', 'auditor', '330000/330100').token;
  T.xihu = tokens.add('西湖区教育局', 'auditor', '330000/330100/330106').token;
  T.binjiang = tokens.add('滨江区教育局', 'auditor', '330000/330100/330108').token;
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'reports' }).storage;
  await storage.start();
  await writeCity(storage);
  await cityRollup(storage, () => registry.index, calendars).range('2026-10-05', '2026-10-11');
  // Reports only: no broker, so the live view never connects.
  app = await testApp({
    registry,
    calendars,
    tokens,
    storage,
    live: new LiveState(undefined, silentLogger()),
  });
});
afterAll(async () => {
  await app?.close();
  await storage?.stop();
  await influxd.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const get = (url: string, token: string) =>
  app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
const json = async (url: string, token: string) => {
  const r = await get(url, token);
  expect(r.statusCode, r.body).toBe(200);
  return r.json();
};
/** A CSV file as rows of header → cell (a real CSV parser: cells with `,` or `;` are quoted). */
const csvRows = async (url: string, token: string): Promise<Record<string, string>[]> => {
  const r = await get(url, token);
  expect(r.statusCode, r.body).toBe(200);
  return parseCsv(r.body, { bom: true, columns: true });
};
/** The first sheet of an XLSX file as rows of header → cell. */
const xlsxRows = async (url: string, token: string): Promise<Record<string, unknown>[]> => {
  const r = await get(url, token);
  expect(r.statusCode, r.body).toBe(200);
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.load(r.rawPayload as unknown as ArrayBuffer);
  const [header, ...rows] = wb.worksheets[0]!.getSheetValues().filter(Boolean) as unknown[][];
  return rows.map((row) => Object.fromEntries(header!.map((h, i) => [h, row[i] ?? null]).slice(1)));
};
const csvLines = (body: string) =>
  body
    .replace(/^\uFEFF/, '')
    .trim()
    .split('\r\n');

describe('report responses carry the definitions', () => {
  it("coverage counts the token's own calendars: 滨江区 2 of 2 teaching dates, 西湖区 and the city 3 of 3", async () => {
    for (const path of [
      '/v1/attainment',
      '/v1/attainment/schools',
      '/v1/attainment/classrooms',
      '/v1/audit/devices',
    ]) {
      expect((await json(`${path}?period=${WEEK}`, T.binjiang)).coverage).toEqual({
        rolledDays: 2,
        teachingDates: 2,
      });
      expect((await json(`${path}?period=${WEEK}`, T.xihu)).coverage).toEqual({
        rolledDays: 3,
        teachingDates: 3,
      });
    }
    expect((await json(`/v1/attainment?period=${WEEK}`, T.city)).coverage).toEqual({
      rolledDays: 3,
      teachingDates: 3,
    });
    // ?region= narrows like a scope.
    expect(
      (await json(`/v1/attainment?period=${WEEK}&region=330000/330100/330108`, T.city)).coverage,
    ).toEqual({ rolledDays: 2, teachingDates: 2 });
  });

  it('rollups say how many schools were judged, in JSON and in the file', async () => {
    const att = await json(`/v1/attainment?period=2026-10-05..2026-10-12`, T.city);
    expect(
      att.rollups.find(
        (r: { region: string; split: string }) => r.region === '330000/330100' && r.split === 'all',
      ),
    ).toMatchObject({
      schools: 3,
      judgedSchools: 3,
      schoolsNotApplicable: 0,
    });
    // Monday 12 October is not rolled up: every school is registered, none is judged.
    const monday = await json('/v1/attainment?period=2026-10-12', T.city);
    expect(
      monday.rollups.find(
        (r: { region: string; split: string }) => r.region === '330000/330100' && r.split === 'all',
      ),
    ).toMatchObject({
      schools: 3,
      judgedSchools: 0,
      schoolsNotApplicable: 3,
      xxtPct: null,
      students: 0,
      studentsPerComputer: null,
    });
    const csv = csvLines((await get('/v1/attainment?period=2026-10-12&format=csv', T.city)).body);
    const header = csv[0]!.split(',');
    const at = header.indexOf('学校数');
    expect(header.slice(at, at + 3)).toEqual(['学校数', '参评学校数', '校校通达标学校']);
    expect(
      csv
        .find((l) => l.startsWith('330000/330100,杭州市,市,city,合计,all,'))!
        .split(',')
        .slice(at, at + 3),
    ).toEqual(['3', '0', '0']);
  });

  it('not known is null, not false or 0, and passes the response schemas', async () => {
    const monday = await json('/v1/attainment/schools?period=2026-10-12', T.city);
    expect(monday.items.map((s: { uplink: unknown }) => s.uplink)).toEqual([
      expect.objectContaining({ monitored: null, availabilityPct: null, congested: null, busyPct: null }),
      expect.objectContaining({ monitored: null, availabilityPct: null, congested: null, busyPct: null }),
      expect.objectContaining({ monitored: null, availabilityPct: null, congested: null, busyPct: null }),
    ]);
    const rooms = await json('/v1/attainment/classrooms?period=2026-10-12', T.city);
    expect(
      rooms.items.map((c: { id: string; reasons: { code: string }[]; periodsUsedPerWeek: null }) => [
        c.id,
        c.reasons.map((r) => r.code),
        c.periodsUsedPerWeek,
      ]),
    ).toEqual([
      ['A1', ['not_rolled_up'], null],
      ['A2', ['not_rolled_up'], null],
      ['B1', ['not_rolled_up'], null],
      ['B2', ['not_rolled_up'], null],
      ['C1', ['not_rolled_up'], null],
    ]);
  });

  it('the audit says where "last used" looked back from', async () => {
    const audit = await json('/v1/audit/idle?period=2026-10-10&idleDays=2', T.xihu);
    // Two teaching days up to Saturday 10 October by every calendar in use: 西湖区's Sat 10 and Fri 9, 滨江区's
    // Fri 9 and Thu 8 (its Saturday is no school day). B's projector, last used on Thu 8, is idle since.
    expect(audit.lookbackFrom).toBe('2026-10-08');
    expect(audit.items.map((d: { id: string; lastUsed: string }) => [d.id, d.lastUsed])).toEqual([
      ['pj-b1', '2026-10-08'],
    ]);
  });
});

describe('report files', () => {
  it('head the per-class bandwidth 班均带宽 (per class), not 生均 (per student)', async () => {
    const csv = csvLines((await get(`/v1/attainment/schools?period=${WEEK}&format=csv`, T.xihu)).body);
    const header = csv[0]!.split(',');
    expect(header).toContain('班均带宽Mbps');
    expect(csv[0]).not.toContain('生均');
    // A: 100 Mbps contract ÷ 2 classes.
    expect(csv[1]!.split(',')[header.indexOf('班均带宽Mbps')]).toBe('50');

    const xlsx = await get(`/v1/attainment/schools?period=${WEEK}&format=xlsx`, T.xihu);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(xlsx.rawPayload as unknown as ArrayBuffer);
    const row = wb.worksheets[0]!.getRow(1).values as unknown[];
    expect(row).toContain('班均带宽Mbps');
    expect(row.some((v) => String(v).includes('生均'))).toBe(false);
  });

  it('write enumerations and reasons as Chinese labels, each with its stable code in a column of its own', async () => {
    const schools = await csvRows(`/v1/attainment/schools?period=${WEEK}&format=csv`, T.xihu);
    const b = schools.find((r) => r.学校标识码 === 'B')!;
    expect(b).toMatchObject({
      城乡: '农村',
      城乡代码: 'rural',
      办学类型: '教学点',
      办学类型代码: 'teaching_point',
      带宽来源: '端口速率（实测）',
      带宽来源代码: 'polled',
      拥塞: '是',
      校校通达标: '否',
      未达标原因: '出口带宽不足；班均带宽不足；出口拥塞',
      未达标原因代码: 'uplink_capacity_low;per_class_bandwidth_low;uplink_congested',
    });
    // The figures behind each reason stay, one message per reason, in the same order.
    expect(b.原因说明!.split('; ')).toHaveLength(3);
    expect(b.原因说明).toMatch(/^uplink 10 Mbps, below 100 Mbps; /);
    expect(schools.find((r) => r.学校标识码 === 'A')).toMatchObject({
      城乡: '城区',
      办学类型: '小学',
      带宽来源代码: 'contract',
      校校通达标: '是',
      未达标原因: '',
      未达标原因代码: '',
    });

    const rooms = await csvRows(`/v1/attainment/classrooms?period=${WEEK}&format=csv`, T.xihu);
    expect(rooms.find((r) => r.教室编号 === 'A2')).toMatchObject({
      班班通达标: '否',
      未达标原因: '使用节次不足',
      未达标原因代码: 'used_too_little',
    });
    expect(rooms.find((r) => r.教室编号 === 'B2')).toMatchObject({
      未达标原因: '未配备教学显示设备；学校未达校校通',
      未达标原因代码: 'not_equipped;school_not_connected',
    });

    const devices = await csvRows(`/v1/audit/devices?period=${WEEK}&format=csv`, T.xihu);
    expect(
      devices.map((d) => [d.设备编号, d.设备类型, d.设备类型代码, d.闲置]).filter(([id]) => id !== 'gw-a'),
    ).toEqual(
      expect.arrayContaining([
        ['pj-b1', '投影仪', 'projector', '否'],
        ['pc-a1', '教师机', 'teacher_pc', '否'],
        ['pn-a1', '交互式一体机', 'panel', '否'],
      ]),
    );

    const rollups = await csvRows(`/v1/attainment?period=${WEEK}&format=csv`, T.xihu);
    expect(rollups.map((r) => [r.区域级别, r.区域级别代码, r.分组, r.分组代码])).toEqual([
      ['县（区）', 'county', '合计', 'all'],
      ['县（区）', 'county', '农村', 'rural'],
      ['县（区）', 'county', '城区', 'urban'],
      ['县（区）', 'county', '小学', 'primary'],
      ['县（区）', 'county', '教学点', 'teaching_point'],
    ]);

    // The workbook carries the same cells.
    const xlsx = await xlsxRows(`/v1/attainment/schools?period=${WEEK}&format=xlsx`, T.xihu);
    expect(xlsx.find((r) => r.学校标识码 === 'B')).toMatchObject({
      城乡: '农村',
      城乡代码: 'rural',
      未达标原因代码: 'uplink_capacity_low;per_class_bandwidth_low;uplink_congested',
    });
    // JSON keeps the codes.
    const list = await json(`/v1/attainment/schools?period=${WEEK}`, T.xihu);
    expect(list.items[1]).toMatchObject({ id: 'B', area: 'rural', level: 'teaching_point' });
    expect(list.items[1].xxt.reasons[0]).toEqual({
      code: 'uplink_capacity_low',
      message: expect.any(String),
    });
  });
});

describe('report files name what each row is about and say what the figures were judged on', () => {
  it('classroom, idle and usage files carry school, classroom and region names beside the ids', async () => {
    const rooms = await csvRows(`/v1/attainment/classrooms?period=${WEEK}&format=csv`, T.xihu);
    expect(rooms.find((r) => r.教室编号 === 'A1')).toMatchObject({
      教室名称: '一(1)班',
      学校标识码: 'A',
      学校名称: '西湖区第一小学',
      区域代码: '330000/330100/330106',
      区域: '西湖区',
    });
    const idle = await csvRows(`/v1/audit/idle?period=${WEEK}&idleDays=2&format=csv`, T.xihu);
    expect(idle).toEqual([
      expect.objectContaining({
        设备编号: 'pj-b1',
        学校名称: '转塘教学点',
        教室编号: 'B1',
        教室名称: '复式班一',
        区域: '西湖区',
        采购批次: '2019-西湖-01',
      }),
    ]);
    const usage = await xlsxRows(`/v1/audit/devices?period=${WEEK}&format=xlsx`, T.binjiang);
    expect(usage.map((d) => [d.设备编号, d.学校名称, d.教室名称, d.区域])).toEqual([
      ['pn-c1', '滨江区实验初中', '七(1)班', '滨江区'],
    ]);
    const schools = await csvRows(`/v1/attainment/schools?period=${WEEK}&format=csv`, T.binjiang);
    expect(schools.map((s) => [s.学校名称, s.区域代码, s.区域])).toEqual([
      ['滨江区实验初中', '330000/330100/330108', '滨江区'],
    ]);
  });

  it('every file states its coverage: a column on every row, an X-CFM-Coverage header, and a notes sheet', async () => {
    const routes = [
      '/v1/attainment',
      '/v1/attainment/schools',
      '/v1/attainment/classrooms',
      '/v1/audit/devices',
      '/v1/audit/idle',
    ];
    for (const route of routes)
      for (const format of ['csv', 'xlsx']) {
        const url = `${route}?period=${WEEK}&idleDays=1&format=${format}`;
        expect((await get(url, T.xihu)).headers['x-cfm-coverage'], url).toBe('rolledDays=3; teachingDates=3');
        const rows = format === 'csv' ? await csvRows(url, T.xihu) : await xlsxRows(url, T.xihu);
        expect(rows.length, url).toBeGreaterThan(0);
        for (const r of rows) expect(r.评估覆盖, url).toBe('已汇总 3 / 3 个教学日');
      }
    // By the calendars of the schools the file covers: 滨江区 has no make-up Saturday.
    const binjiang = `/v1/audit/devices?period=${WEEK}&format=csv`;
    expect((await get(binjiang, T.binjiang)).headers['x-cfm-coverage']).toBe('rolledDays=2; teachingDates=2');
    expect((await csvRows(binjiang, T.binjiang))[0]!.评估覆盖).toBe('已汇总 2 / 2 个教学日');

    // Two weeks asked for on one rolled-up week: 3 of the 8 teaching days of 西湖区 so far are judged.
    const partial = '2026-10-05..2026-10-16';
    const csv = await get(`/v1/attainment/schools?period=${partial}&format=csv`, T.xihu);
    expect(csv.headers['x-cfm-coverage']).toBe('rolledDays=3; teachingDates=8');
    expect(
      (await csvRows(`/v1/attainment/schools?period=${partial}&format=csv`, T.xihu)).map((r) => r.评估覆盖),
    ).toEqual(['已汇总 3 / 8 个教学日', '已汇总 3 / 8 个教学日']);
    const xlsx = await get(`/v1/attainment/classrooms?period=${partial}&format=xlsx`, T.xihu);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(xlsx.rawPayload as unknown as ArrayBuffer);
    expect(wb.worksheets.map((w) => w.name)).toEqual(['教室班班通', '说明']);
    const notes = Object.fromEntries(
      (wb.getWorksheet('说明')!.getSheetValues().filter(Boolean) as unknown[][]).map((r) => [r[1], r[2]]),
    );
    expect(notes).toMatchObject({
      报表: '教室班班通',
      统计期: '2026-10-05 至 2026-10-16',
      范围: '西湖区（330000/330100/330106）',
      评估覆盖: '已汇总 3 / 8 个教学日：统计期内截至今日的教学日 8 个，已汇总 3 个',
      注意: '还有 5 个教学日尚未汇总：表中数字只反映已汇总的 3 个教学日',
    });
    expect(String(notes.评价标准)).toMatch(/^cn-2020（/);
    // A fully covered period has no warning.
    const full = await get(`/v1/attainment?period=${WEEK}&format=xlsx`, T.xihu);
    const wb2 = new ExcelJS.Workbook();
    await wb2.xlsx.load(full.rawPayload as unknown as ArrayBuffer);
    const labels = (wb2.getWorksheet('说明')!.getSheetValues().filter(Boolean) as unknown[][]).map(
      (r) => r[1],
    );
    expect(labels).toContain('评估覆盖');
    expect(labels).not.toContain('注意');
  });
});

describe('idle equipment has one default', () => {
  it("without ?idleDays= the audit applies the profile's idleDays — DEFAULT_IDLE_DAYS in every built-in — and says which", async () => {
    const profiles = await json('/v1/profiles', T.city);
    for (const p of profiles.items) expect(p.idleDays, p.id).toBe(DEFAULT_IDLE_DAYS);
    // A deployment's own profile that sets none gets the same.
    const { idleDays: _, ...own } = profiles.items[0];
    expect(profileSchema.parse({ ...own, id: 'own' }).idleDays).toBe(DEFAULT_IDLE_DAYS);

    for (const profile of ['', '&profile=cn-2017']) {
      const idle = await json(`/v1/audit/idle?period=${WEEK}${profile}`, T.xihu);
      expect(idle.idleDays).toBe(DEFAULT_IDLE_DAYS);
      // Three rolled-up teaching days cannot make twenty idle ones: the default list is empty here, and the
      // response says by what threshold.
      expect(idle.items).toEqual([]);
    }
    const two = await json(`/v1/audit/idle?period=${WEEK}&idleDays=2`, T.xihu);
    expect(two.idleDays).toBe(2);
    expect(two.items.map((d: { id: string }) => d.id)).toEqual(['pj-b1']);
    expect((await json(`/v1/audit/devices?period=${WEEK}`, T.xihu)).idleDays).toBe(DEFAULT_IDLE_DAYS);

    // The workbook says it too.
    const xlsx = await get(`/v1/audit/idle?period=${WEEK}&idleDays=2&format=xlsx`, T.xihu);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(xlsx.rawPayload as unknown as ArrayBuffer);
    const notes = (wb.getWorksheet('说明')!.getSheetValues().filter(Boolean) as unknown[][]).map((r) =>
      r.slice(1),
    );
    expect(notes).toContainEqual([
      '闲置判定',
      '连续 2 个已汇总教学日未使用即为闲置（?idleDays=，默认取评价标准的设定）；最近使用从 2026-10-05 起回溯',
    ]);
  });
});
