import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ExcelJS from 'exceljs';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { credentialNamesReader } from '../../api/server.js';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { mqttConfigSchema } from '../../common/mqtt.js';
import { RegistryStore } from '../../common/registry/store.js';
import { TEMPLATE_EXAMPLE } from '../../common/registry/template.js';
import type { Storage } from '../../common/storage/storage.js';
import { ENTITIES, SHEETS } from '../../contracts/registry.js';
import { openStream, testApp } from '../helpers/api.js';
import { CITY, CITY_CALENDAR, cityRollup, writeCity } from '../helpers/city.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { uplinkOf } from '../helpers/messages.js';
import { Mosquitto } from '../helpers/mqtt.js';

const influxd = new Influxd();
const mosquitto = new Mosquitto();
let storage: Storage;
let dir: string;
let registry: RegistryStore;
let tokens: TokenStore;
let live: LiveState;
let app: Awaited<ReturnType<typeof testApp>>;
const T: Record<'admin' | 'xihu' | 'binjiang' | 'ops', string> = {
  admin: '',
  xihu: '',
  binjiang: '',
  ops: '',
};
const WEEK = '2026-10-05..2026-10-11';
const calendars = new Calendars([CITY_CALENDAR]);

const makeApp = (rateLimitMax = 10_000) =>
  testApp({ registry, calendars, tokens, storage, live, rateLimitMax });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-api-'));
  registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  tokens = new TokenStore(join(dir, 'tokens.json')).load();
  T.admin = tokens.add('装备中心', 'admin').token;
  T.xihu = tokens.add('西湖区教育局', 'auditor', '330000/330100/330106').token;
  T.binjiang = tokens.add('滨江区教育局', 'ops', '330000/330100/330108').token;
  T.ops = tokens.add('城域网运维', 'ops', '330000/330100').token;
  await Promise.all([influxd.start(), mosquitto.start()]);
  storage = testStorage(influxd.url, { database: 'city' }).storage;
  await storage.start();
  await writeCity(storage);
  await cityRollup(storage, () => registry.index, calendars).range('2026-10-05', '2026-10-11');
  live = new LiveState(mqttConfigSchema.parse({ url: mosquitto.url, clientId: 'api-test' }), silentLogger());
  await live.start();
  app = await makeApp();
});
afterAll(async () => {
  await app?.close();
  await live?.stop();
  await storage?.stop();
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

const get = (url: string, token?: string) =>
  app.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });
const json = async (url: string, token: string) => {
  const r = await get(url, token);
  expect(r.statusCode, r.body).toBe(200);
  return r.json();
};

describe('access', () => {
  it('health and the OpenAPI document need no token; everything else does', async () => {
    const h = await get('/health');
    expect(h.statusCode).toBe(200);
    expect(h.json()).toMatchObject({ influx: { ok: true }, registry: { schools: 3, devices: 8 } });
    const doc = (await get('/openapi.json')).json();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/schools',
        '/v1/attainment',
        '/v1/audit/idle',
        '/v1/registry/import',
        '/v1/bandwidth/live',
      ]),
    );
    expect(doc.paths['/v1/attainment'].get.parameters.map((p: { name: string }) => p.name)).toContain(
      'period',
    );
    for (const token of [undefined, 'cfm_not-a-token']) {
      const r = await get('/v1/schools', token);
      expect(r.statusCode).toBe(401);
      expect(r.json()).toEqual({
        status: 'error',
        code: 'CFM_API_UNAUTHENTICATED',
        message: 'a valid bearer token is required',
      });
    }
  });

  it('a token revoked by the command line stops working without a restart', async () => {
    const t = tokens.add('临时', 'auditor');
    expect((await get('/v1/profiles', t.token)).statusCode).toBe(200);
    new TokenStore(tokens.path).load().revoke(t.id); // another process
    tokens.checkEveryMs = 0;
    try {
      expect((await get('/v1/profiles', t.token)).statusCode).toBe(401);
      expect((await get('/v1/profiles', T.ops)).statusCode).toBe(200);
    } finally {
      tokens.checkEveryMs = 2_000;
    }
  });

  it('stores only token hashes', async () => {
    const stored = JSON.stringify(tokens.list());
    for (const t of Object.values(T)) expect(stored).not.toContain(t.slice(4));
  });

  it('a county token sees only its schools: list, detail, rollups, per-school results and exports', async () => {
    expect((await json('/v1/schools', T.xihu)).items.map((s: { id: string }) => s.id)).toEqual(['A', 'B']);
    expect((await get('/v1/schools/C', T.xihu)).statusCode).toBe(404);
    expect((await json('/v1/schools/C', T.binjiang)).name).toBe('滨江区实验初中');

    const att = await json(`/v1/attainment?period=${WEEK}`, T.xihu);
    expect(new Set(att.rollups.map((r: { region: string }) => r.region))).toEqual(
      new Set(['330000/330100/330106']),
    );
    const city = await json(`/v1/attainment?period=${WEEK}`, T.ops);
    expect(
      city.rollups.find(
        (r: { region: string; split: string }) => r.region === '330000/330100' && r.split === 'all',
      ),
    ).toMatchObject({
      schools: 3,
      schoolsAttained: 1,
      classes: 6,
      classesAttained: 1,
    });

    const schools = await json(`/v1/attainment/schools?period=${WEEK}`, T.binjiang);
    expect(schools.items.map((s: { id: string }) => s.id)).toEqual(['C']);
    expect(schools.items[0].xxt.reasons[0].code).toBe('uplink_availability_low');
    const idle = await json(`/v1/audit/idle?period=${WEEK}&idleDays=2`, T.binjiang);
    expect(idle.items).toEqual([]); // B's idle projector is in another county
    expect(
      (await json(`/v1/audit/idle?period=${WEEK}&idleDays=2`, T.xihu)).items.map((d: { id: string }) => d.id),
    ).toEqual(['pj-b1']);

    const csv = await get(`/v1/attainment/schools?period=${WEEK}&format=csv`, T.xihu);
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(csv.headers['content-disposition']).toBe(
      'attachment; filename="schools_2026-10-05_2026-10-11_cn-2020.csv"',
    );
    const lines = csv.body
      .replace(/^\uFEFF/, '')
      .trim()
      .split('\r\n');
    expect(lines[0]).toMatch(/^学校标识码,学校名称,/);
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(['A', 'B']);

    const xlsx = await get(`/v1/attainment?period=${WEEK}&format=xlsx`, T.binjiang);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(xlsx.rawPayload as unknown as ArrayBuffer);
    const regions = wb.worksheets[0]!.getColumn(1).values.slice(2);
    expect(new Set(regions)).toEqual(new Set(['330000/330100/330108']));
  });

  it('a region outside the token scope is refused, naming the field', async () => {
    const r = await get(`/v1/attainment?period=${WEEK}&region=330000/330100`, T.xihu);
    expect(r.statusCode).toBe(403);
    expect(r.json()).toMatchObject({ code: 'CFM_API_OUT_OF_SCOPE', field: 'region' });
    expect(
      (await json(`/v1/attainment?period=${WEEK}&region=330000/330100/330108`, T.ops)).rollups.length,
    ).toBeGreaterThan(0);
  });

  it('a period beyond the dates InfluxDB can store is a 400 naming `period`, on every report, not a 503', async () => {
    for (const period of [
      '2300-01',
      '2262-04',
      '9999-W01',
      '2261-12-01..2262-01-05',
      '1677-09',
      '1969-12-31',
    ]) {
      for (const route of [
        '/v1/attainment',
        '/v1/attainment/schools',
        '/v1/audit/devices',
        '/v1/audit/idle',
      ]) {
        const r = await get(`${route}?period=${period}`, T.ops);
        expect(r.statusCode, `${route}?period=${period}: ${r.body}`).toBe(400);
        expect(r.json()).toEqual({
          status: 'error',
          code: 'CFM_API_BAD_REQUEST',
          message: `period: ${period}: outside 1970-01-01..2261-12-31, the dates a report can cover (InfluxDB stores times up to 2262-04-11)`,
          field: 'period',
        });
      }
    }
    // The bounds themselves are periods like any other.
    for (const period of ['2261-12', '1970-01'])
      expect((await get(`/v1/attainment?period=${period}`, T.ops)).statusCode).toBe(200);
  });

  it('the registry is not for region-scoped tokens, even admin ones', async () => {
    const scopedAdmin = tokens.add('区管理员', 'admin', '330000/330100/330106').token;
    for (const r of [
      await get('/v1/registry/export', scopedAdmin),
      await app.inject({
        method: 'POST',
        url: '/v1/registry/import?filename=x.yaml&replace=schools',
        headers: { authorization: `Bearer ${scopedAdmin}` },
        payload: 'schools: []',
      }),
    ]) {
      expect(r.statusCode).toBe(403);
      expect(r.json().code).toBe('CFM_API_OUT_OF_SCOPE');
    }
    expect(registry.index.data.schools.length).toBeGreaterThanOrEqual(3);
  });

  it('roles: an auditor may not import or stream (ops streaming is the live-bandwidth test below)', async () => {
    const r = await app.inject({
      method: 'POST',
      url: '/v1/registry/import?filename=x.yaml',
      headers: { authorization: `Bearer ${T.xihu}` },
      payload: 'schools: []',
    });
    expect(r.statusCode).toBe(403);
    expect(r.json().code).toBe('CFM_API_FORBIDDEN');
    const stream = await get('/v1/bandwidth/live', T.xihu);
    expect(stream.statusCode).toBe(403);
    expect(stream.json()).toMatchObject({
      code: 'CFM_API_FORBIDDEN',
      message: 'role auditor may not use this route',
    });
  });
});

describe('the region parameter', () => {
  const XIHU = '330000/330100/330106';
  const ROUTES = [
    '/v1/schools',
    '/v1/devices',
    '/v1/devices/unassigned',
    `/v1/attainment?period=${WEEK}`,
    `/v1/attainment/schools?period=${WEEK}`,
    `/v1/attainment/classrooms?period=${WEEK}`,
    `/v1/audit/devices?period=${WEEK}`,
    `/v1/audit/idle?period=${WEEK}&idleDays=2`,
  ];
  const withRegion = (route: string, region: string) =>
    `${route}${route.includes('?') ? '&' : '?'}region=${region}`;

  it.each(ROUTES)('%s: a bare division code answers as its path does', async (route) => {
    const bare = await json(withRegion(route, '330106'), T.ops);
    expect(bare).toEqual(await json(withRegion(route, XIHU), T.ops));
    // A county token asking for its own county by code, too.
    expect(await json(withRegion(route, '330106'), T.xihu)).toEqual(await json(route, T.xihu));
  });

  it('a bare code names the schools of its region, at every level', async () => {
    const ids = async (region: string) =>
      (await json(`/v1/schools?region=${region}`, T.ops)).items.map((s: { id: string }) => s.id);
    expect(await ids('330106')).toEqual(['A', 'B']);
    expect(await ids('330108')).toEqual(['C']);
    expect(await ids('330100')).toEqual(['A', 'B', 'C']);
  });

  it.each([...ROUTES, '/v1/bandwidth/live'])(
    "%s: a code or path the registry does not know is a 400 naming region, not an empty list; another county's code a 403",
    async (route) => {
      const answer = async (region: string, token: string) => {
        const r = await get(withRegion(route, region), token);
        return { http: r.statusCode, ...r.json() };
      };
      expect(await answer('330127', T.ops)).toEqual({
        http: 400,
        status: 'error',
        code: 'CFM_API_BAD_REQUEST',
        message:
          'region 330127 is not in the registry: give the division code (行政区划代码) of a region it lists, e.g. 330106, or its path, e.g. 330000/330100/330106',
        field: 'region',
      });
      expect(await answer('330000/330200/330106', T.ops)).toMatchObject({
        http: 400,
        message: `region 330000/330200/330106 is not a path of the registry: region 330106 lies at ${XIHU}`,
        field: 'region',
      });
      // The scope holds for codes: county 滨江's token asking for 西湖's code.
      expect(await answer('330106', T.binjiang)).toEqual({
        http: 403,
        status: 'error',
        code: 'CFM_API_OUT_OF_SCOPE',
        message: `region 330106 (${XIHU}) is outside this token's scope 330000/330100/330108`,
        field: 'region',
      });
    },
  );
});

describe('bad requests get a 400 naming the field', () => {
  it.each([
    ['/v1/attainment?period=2026-13', 'period'],
    ['/v1/attainment?period=2026-02-30', 'period'],
    ['/v1/attainment?period=2026-10-09..2026-10-01', 'period'],
    ['/v1/attainment', 'period'],
    [`/v1/attainment?period=${WEEK}&profile=cn-1999`, 'profile'],
    [`/v1/attainment?period=${WEEK}&format=pdf`, 'format'],
    [`/v1/attainment/schools?period=${WEEK}&pageSize=0`, 'pageSize'],
    ['/v1/schools?region=330000/../330100', 'region'],
    [`/v1/audit/idle?period=${WEEK}&idleDays=-3`, 'idleDays'],
    ['/v1/devices?kind=toaster', 'kind'],
  ])('%s → field %s', async (url, field) => {
    const r = await get(url, T.admin);
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json()).toMatchObject({ status: 'error', code: 'CFM_API_BAD_REQUEST', field });
  });

  it('responses carry exactly the fields their schemas list', async () => {
    const school = (await json('/v1/schools', T.admin)).items[0];
    expect(Object.keys(school).sort()).toEqual(
      [
        'area',
        'classes',
        'contractedMbps',
        'devices',
        'id',
        'level',
        'name',
        'region',
        'students',
        'teachers',
        'uplink',
        'link',
      ].sort(),
    );
    // The registry's school has uplinkDevice/uplinkInterface; the list does not expose them.
    expect(school).not.toHaveProperty('uplinkDevice');
    const device = (await json(`/v1/audit/devices?period=${WEEK}&school=A`, T.admin)).items[0];
    expect(Object.keys(device)).toHaveLength(19);
  });
});

describe('registry import over HTTP', () => {
  const importFile = (filename: string, payload: Buffer | string) =>
    app.inject({
      method: 'POST',
      url: `/v1/registry/import?filename=${encodeURIComponent(filename)}`,
      headers: { authorization: `Bearer ${T.admin}`, 'content-type': 'application/octet-stream' },
      payload,
    });

  it('rejects a bad workbook with every error, cells and references in one answer, and changes nothing', async () => {
    const wb = new ExcelJS.Workbook();
    const ws = wb.addWorksheet('学校');
    ws.addRow(['学校标识码', '学校名称', '所属区划代码', '城乡', '办学类型', '班级数', '学生数', '教师数']);
    ws.addRow(['D', '新学校', '330106', '城区', '小学', '十二', 500, 30]);
    ws.addRow(['E', '另一所', '339999', '农村', '小学', 6, 100, 10]);
    // A room of the school refused for its cell: not reported as "school D is not in the registry" — D is
    // there, with an error of its own; a room of an unknown school is.
    const rooms = wb.addWorksheet('教室');
    rooms.addRow(['教室编号', '学校标识码', '教室名称', '班级教室']);
    rooms.addRow(['D1', 'D', '一(1)班', '是']);
    rooms.addRow(['X1', 'X', '一(1)班', '也许']);
    rooms.addRow(['X2', 'X', '一(2)班', '是']);
    const before = registry.version;
    const r = await importFile('新学校.xlsx', Buffer.from(await wb.xlsx.writeBuffer()));
    expect(r.statusCode).toBe(422);
    const body = r.json();
    expect(body.code).toBe('CFM_API_IMPORT_REJECTED');
    expect(body.message).toBe('import rejected, nothing changed: 4 error(s)');
    expect(body.issues).toEqual([
      {
        file: '新学校.xlsx [学校]',
        entity: 'schools',
        row: 2,
        column: 'F (班级数)',
        message: '"十二" is not a number',
      },
      {
        file: '新学校.xlsx [学校]',
        entity: 'schools',
        row: 3,
        column: 'C (所属区划代码)',
        message: 'region 339999 is not in the registry',
      },
      {
        file: '新学校.xlsx [教室]',
        entity: 'classrooms',
        row: 3,
        column: 'D (班级教室)',
        message: '"也许" is not yes/no (是/否, true/false, 1/0)',
      },
      {
        file: '新学校.xlsx [教室]',
        entity: 'classrooms',
        row: 4,
        column: 'B (学校标识码)',
        message: 'school X is not in the registry',
      },
    ]);
    expect(registry.version).toBe(before);
    expect(registry.index.schools.has('D')).toBe(false);
  });

  it('a list with a wrong header is one error, not one more per row that refers to it', async () => {
    const wb = new ExcelJS.Workbook();
    const schools = wb.addWorksheet('学校');
    schools.addRow([
      '学校标识码',
      '学校名称',
      '所属区划代码',
      '城乡',
      '办学类型',
      '班级数',
      '学生数',
      '老师数',
    ]);
    schools.addRow(['D', '新学校', '330106', '城区', '小学', 12, 500, 30]);
    const rooms = wb.addWorksheet('教室');
    rooms.addRow(['教室编号', '学校标识码', '教室名称']);
    for (let i = 1; i <= 30; i++) rooms.addRow([`D${i}`, 'D', `${i}班`]);
    const r = await importFile('新学校.xlsx', Buffer.from(await wb.xlsx.writeBuffer()));
    expect(r.statusCode).toBe(422);
    expect(r.json().issues.map((i: { column?: string; message: string }) => [i.column, i.message])).toEqual([
      ['H (老师数)', expect.stringMatching(/^unknown column; expected /)],
      [undefined, 'required column teachers (教师数) is missing'],
    ]);
  });

  it('bounds the answer as before: at most 200 errors per file, cells and references counted together', async () => {
    const header = '学校标识码,学校名称,所属区划代码,城乡,办学类型,班级数,学生数,教师数';
    const rows = Array.from({ length: 300 }, (_, i) =>
      i % 2 === 0 ? `S${i},学校${i},330106,城区,小学,多,500,30` : `S${i},学校${i},339999,城区,小学,6,500,30`,
    );
    const r = await importFile('schools.csv', `${header}\n${rows.join('\n')}\n`);
    expect(r.statusCode).toBe(422);
    const issues = r.json().issues as { row?: number; message: string }[];
    expect(issues).toHaveLength(201);
    // In row order, both kinds side by side, then how many more.
    expect(issues.slice(0, 2).map((i) => [i.row, i.message])).toEqual([
      [2, '"多" is not a number'],
      [3, 'region 339999 is not in the registry'],
    ]);
    expect(issues.at(-1)).toEqual({ file: 'schools.csv', message: '100 more errors not shown' });
  });

  it('imports a CSV, and the new school appears at once; the export reimports unchanged', async () => {
    const csv =
      '学校标识码,学校名称,所属区划代码,城乡,办学类型,班级数,学生数,教师数\nD,西湖区第二小学,330106,城区,小学,12,500,30\n';
    const r = await app.inject({
      method: 'POST',
      url: '/v1/registry/import?filename=schools.csv',
      headers: { authorization: `Bearer ${T.admin}`, 'content-type': 'text/csv' },
      payload: csv,
    });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ rows: { schools: 1 }, totals: { schools: 4 } });
    expect((await json('/v1/schools', T.xihu)).items.map((s: { id: string }) => s.id)).toEqual([
      'A',
      'B',
      'D',
    ]);

    // A router polled on its own SNMP port and probed by TCP: the columns go out and come back as they were.
    const devices = await app.inject({
      method: 'POST',
      url: '/v1/registry/import?filename=devices.csv',
      headers: { authorization: `Bearer ${T.admin}`, 'content-type': 'text/csv' },
      payload:
        '设备编号,学校标识码,设备类型,管理地址,SNMP端口,探测方式,探测端口\ngw-a,A,路由器,10.0.0.1,1161,TCP,22\n',
    });
    expect(devices.statusCode, devices.body).toBe(200);
    expect(registry.index.device('A', 'gw-a')).toMatchObject({
      snmpPort: 1161,
      probeMethod: 'tcp',
      probePort: 22,
    });

    const exported = await get('/v1/registry/export', T.admin);
    const sheet = new ExcelJS.Workbook();
    await sheet.xlsx.load(exported.rawPayload as unknown as ArrayBuffer);
    const cells = JSON.stringify(sheet.getWorksheet('devices')!.getSheetValues());
    expect(cells).toContain('1161,"tcp",22');
    const before = structuredClone(registry.index.data);
    const again = await app.inject({
      method: 'POST',
      url: '/v1/registry/import?filename=registry.xlsx&replace=regions,schools,classrooms,devices',
      headers: { authorization: `Bearer ${T.admin}`, 'content-type': 'application/octet-stream' },
      payload: exported.rawPayload,
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(registry.index.data).toEqual(before);
  });
});

describe('the registry template (GET /v1/registry/template.xlsx)', () => {
  it('any read token gets the four sheets headed as the importer reads them, an example row each, and notes on every column', async () => {
    expect((await get('/v1/registry/template.xlsx')).statusCode).toBe(401);
    const r = await get('/v1/registry/template.xlsx', T.xihu); // an auditor limited to one county
    expect(r.statusCode, r.body).toBe(200);
    expect(r.headers['content-type']).toBe(
      'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    );
    expect(r.headers['content-disposition']).toBe(
      `attachment; filename="registry-template.xlsx"; filename*=UTF-8''${encodeURIComponent('设备台账模板.xlsx')}`,
    );
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(r.rawPayload as unknown as ArrayBuffer);
    expect(wb.worksheets.map((w) => w.name)).toEqual(['区域', '学校', '教室', '设备', '说明']);
    for (const e of ENTITIES) {
      const ws = wb.getWorksheet(SHEETS[e].labels[0])!;
      expect(ws.getRow(1).values).toEqual([undefined, ...SHEETS[e].columns.map((c) => c.labels[0])]);
      expect(ws.actualRowCount, e).toBe(2);
    }
    expect(wb.getWorksheet('学校')!.getRow(2).getCell(4).value).toBe('城区');
    expect(wb.getWorksheet('设备')!.getRow(2).getCell(4).value).toBe('交互式一体机');

    // 说明: every column of every sheet, with its meaning and the values allowed, in Chinese.
    const notes = (wb.getWorksheet('说明')!.getSheetValues().filter(Boolean) as unknown[][]).map((row) =>
      row.slice(1).map((v) => (v === undefined || v === null ? '' : String(v))),
    );
    const table = notes.slice(notes.findIndex((row) => row[0] === '工作表') + 1);
    expect(table.map((row) => [row[0], row[1], row[3]])).toEqual(
      ENTITIES.flatMap((e) => SHEETS[e].columns.map((c) => [SHEETS[e].labels[0], c.labels[0], c.key])),
    );
    for (const row of table) {
      expect(row[4], row[1]).toMatch(/^[是否]$/);
      expect(row[5], row[1]).toMatch(/\p{Script=Han}/u);
      expect(row[6], row[1]).not.toBe('');
    }
    const byKey = (sheet: string, key: string) => table.find((row) => row[0] === sheet && row[3] === key)!;
    expect(byKey('学校', 'id')[4]).toBe('是');
    expect(byKey('学校', 'contractedMbps')[4]).toBe('否');
    expect(byKey('学校', 'area')[6]).toMatch(/^城区（urban）、农村（rural）；也可写：/);
    expect(byKey('设备', 'kind')[6]).toContain('交互式白板（whiteboard）');
    expect(byKey('教室', 'isClass')[6]).toMatch(/^是 \/ 否/);
  });

  it('api/README.md documents the route and every sheet and header label the importer accepts', () => {
    const readme = readFileSync(new URL('../../api/README.md', import.meta.url), 'utf8');
    expect(readme).toContain('| `GET /v1/registry/template.xlsx` |');
    for (const e of ENTITIES)
      for (const c of SHEETS[e].columns)
        expect(readme).toContain(
          `| ${SHEETS[e].labels.join(' / ')} | ${c.labels[0]} | ${c.labels.slice(1).join('、')} | \`${c.key}\` |`,
        );
  });

  it('imports as downloaded (the example registers) and with the example rows deleted (nothing registers)', async () => {
    const template = (await get('/v1/registry/template.xlsx', T.admin)).rawPayload;
    const fresh = new RegistryStore(join(dir, 'template-registry.json')).load();
    const other = await testApp({ registry: fresh, calendars, tokens, storage, live });
    const post = (payload: Buffer) =>
      other.inject({
        method: 'POST',
        url: `/v1/registry/import?filename=${encodeURIComponent('设备台账模板.xlsx')}`,
        headers: { authorization: `Bearer ${T.admin}`, 'content-type': 'application/octet-stream' },
        payload,
      });
    try {
      const wb = new ExcelJS.Workbook();
      await wb.xlsx.load(template as unknown as ArrayBuffer);
      for (const e of ENTITIES) wb.getWorksheet(SHEETS[e].labels[0])!.spliceRows(2, 1);
      const blank = await post(Buffer.from(await wb.xlsx.writeBuffer()));
      expect(blank.statusCode, blank.body).toBe(200);
      expect(blank.json().rows).toEqual({ regions: 0, schools: 0, classrooms: 0, devices: 0 });

      const asIs = await post(template);
      expect(asIs.statusCode, asIs.body).toBe(200);
      expect(asIs.json().rows).toEqual({ regions: 1, schools: 1, classrooms: 1, devices: 1 });
      expect(fresh.index.data).toEqual(TEMPLATE_EXAMPLE);
    } finally {
      await other.close();
    }
  });
});

describe('live bandwidth (SSE) from real MQTT readings', () => {
  it('streams uplink readings of the schools in scope only', async () => {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    await live.ready();
    const sse = await openStream(`http://127.0.0.1:${port}/v1/bandwidth/live`, T.binjiang);
    expect(sse.contentType).toMatch(/^text\/event-stream/);
    const pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'poller-test' });
    const reading = (inBps: number) => JSON.stringify(uplinkOf(inBps));
    // A garbage reading is counted and dropped; a Xihu school's reading is not for this token; C's is.
    await pub.publishAsync('cfm/v1/C/gw-c/iface', '{"v":1,"ifaces":"nope"}', { qos: 1 });
    await pub.publishAsync('cfm/v1/A/gw-a/iface', reading(5e6), { qos: 1 });
    await pub.publishAsync('cfm/v1/C/gw-c/iface', reading(42e6), { qos: 1 });
    await waitFor(() => sse.events.some((e) => e.data.school === 'C'), { timeoutMs: 10_000 });
    await waitFor(() => live.uplinks.has('A'), { timeoutMs: 10_000 });
    expect(sse.events.some((e) => e.data.school === 'A')).toBe(false);
    const ev = sse.events.find((e) => e.data.school === 'C')!;
    expect(ev).toMatchObject({ id: expect.stringMatching(/^\d+$/), event: 'uplink' });
    expect(ev.data).toMatchObject({
      school: 'C',
      device: 'gw-c',
      inBps: 42e6,
      speedMbps: 1000,
    });
    expect(live.rejected).toBeGreaterThanOrEqual(1);
    // The school list shows the live rate too.
    expect((await json('/v1/schools/C', T.binjiang)).uplink).toMatchObject({ inBps: 42e6 });
    await sse.close();
    await pub.endAsync();
  });
});

describe('live stream lifecycle', () => {
  it('an open stream does not keep the server from closing', async () => {
    const other = await makeApp();
    await other.listen({ host: '127.0.0.1', port: 0 });
    const port = (other.server.address() as { port: number }).port;
    const res = await fetch(`http://127.0.0.1:${port}/v1/bandwidth/live`, {
      headers: { authorization: `Bearer ${T.ops}` },
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read(); // the stream is open
    const closed = await Promise.race([
      other.close().then(() => 'closed'),
      new Promise((r) => setTimeout(() => r('still open after 5 s'), 5_000)),
    ]);
    expect(closed).toBe('closed');
    await reader.cancel().catch(() => undefined);
  });
});

describe('rate limits', () => {
  it('answers 429 with the stable code once a token exceeds its budget', async () => {
    const limited = await makeApp(3);
    try {
      const codes = [];
      for (let i = 0; i < 4; i++)
        codes.push(
          (
            await limited.inject({
              method: 'GET',
              url: '/v1/profiles',
              headers: { authorization: `Bearer ${T.ops}` },
            })
          ).statusCode,
        );
      expect(codes).toEqual([200, 200, 200, 429]);
      const r = await limited.inject({
        method: 'GET',
        url: '/v1/profiles',
        headers: { authorization: `Bearer ${T.ops}` },
      });
      expect(r.json()).toMatchObject({ code: 'CFM_API_RATE_LIMITED' });
      // Another token has its own budget; health is never limited.
      expect(
        (
          await limited.inject({
            method: 'GET',
            url: '/v1/profiles',
            headers: { authorization: `Bearer ${T.admin}` },
          })
        ).statusCode,
      ).toBe(200);
      for (let i = 0; i < 5; i++)
        expect((await limited.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('registry import with api.pollerCredentialsFile (#17)', () => {
  const COMMUNITY = 'api-community-4d2f';
  it('an unknown credentialRef is refused by row and column; names only are read; exports hold no secret', async () => {
    const credentialsFile = join(dir, 'poller-credentials.yaml');
    writeFileSync(
      credentialsFile,
      stringify({ snmp: { 'xihu-v2': { version: '2c', community: COMMUNITY }, broken: { version: 'x' } } }),
      { mode: 0o600 },
    );
    const store = new RegistryStore(
      join(dir, 'registry-creds.json'),
      undefined,
      credentialNamesReader({ pollerCredentialsFile: credentialsFile }),
    ).load();
    await store.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
    const credApp = await testApp({ registry: store, calendars, tokens, storage, live });
    const post = (payload: string) =>
      credApp.inject({
        method: 'POST',
        url: '/v1/registry/import?filename=devices.csv',
        headers: { authorization: `Bearer ${T.admin}`, 'content-type': 'application/octet-stream' },
        payload,
      });
    try {
      const header = '设备编号,学校标识码,设备类型,管理地址,SNMP版本,凭据名称';
      const bad = await post(
        `${header}\ngw-a,A,路由器,10.0.0.1,2c,xihu-v2\ngw-b,B,路由器,10.0.0.2,2c,nobody\ngw-c,C,路由器,not an address!,2c,broken\n`,
      );
      expect(bad.statusCode).toBe(422);
      expect(bad.json().issues).toEqual([
        {
          file: 'devices.csv',
          entity: 'devices',
          row: 3,
          column: 'F (凭据名称)',
          message: "credential nobody is not in the pollers' credentials file",
        },
        {
          file: 'devices.csv',
          entity: 'devices',
          row: 4,
          column: 'D (管理地址)',
          message: 'must be an IPv4 or IPv6 address or a host name',
        },
      ]);
      expect(bad.body).not.toContain(COMMUNITY);
      // A credential whose secrets are wrong is still a name: the poller, not the API, validates them.
      const ok = await post(
        `${header}\ngw-a,A,路由器,10.0.0.1,2c,xihu-v2\ngw-c,C,路由器,10.0.0.3,2c,broken\n`,
      );
      expect(ok.statusCode, ok.body).toBe(200);
      expect(store.index.device('A', 'gw-a')).toMatchObject({
        credentialRef: 'xihu-v2',
        mgmtAddress: '10.0.0.1',
      });
      const exported = await credApp.inject({
        method: 'GET',
        url: '/v1/registry/export',
        headers: { authorization: `Bearer ${T.admin}` },
      });
      expect(exported.statusCode).toBe(200);
      const wb = new ExcelJS.Workbook();
      await wb.xlsx.load(exported.rawPayload as unknown as ArrayBuffer);
      const cells = JSON.stringify(wb.getWorksheet('devices')!.getSheetValues());
      expect(cells).toContain('xihu-v2');
      expect(cells).not.toContain(COMMUNITY);
      expect(readFileSync(store.path, 'utf8')).not.toContain(COMMUNITY);
      // The credentials file gone: imports are refused as the server's problem, without its path.
      rmSync(credentialsFile);
      const gone = await post(`${header}\ngw-a,A,路由器,10.0.0.1,2c,xihu-v2\n`);
      expect(gone.statusCode).toBe(503);
      expect(gone.json()).toMatchObject({ code: 'CFM_API_UNAVAILABLE' });
      expect(gone.body).not.toContain(credentialsFile);
    } finally {
      await credApp.close();
    }
  });
});

describe('a database that stalls', () => {
  it('a report is a 503 naming no internals after influx.timeoutMs, health says so, and the API serves again once it answers', async () => {
    const proxy = await new FaultProxy(influxd.url).start();
    const slow = testStorage(proxy.url, { database: 'city', timeoutMs: 500 }).storage;
    const { log, lines } = captureLogger();
    const slowApp = await testApp({ registry, calendars, tokens, storage: slow, live, log });
    const report = () =>
      slowApp.inject({
        method: 'GET',
        url: `/v1/attainment?period=${WEEK}`,
        headers: { authorization: `Bearer ${T.admin}` },
      });
    try {
      await slow.start();
      // Every query of the report (and /ping): its headers sent and its body never finished, then nothing sent.
      for (const headers of [true, false]) {
        proxy.stallNext(100, { headers, path: /^\/(query|ping)/ });
        const r = await report();
        expect(r.statusCode, r.body).toBe(503);
        expect(r.json()).toMatchObject({ code: 'CFM_API_UNAVAILABLE' });
        expect(r.body).not.toContain(proxy.url);
        if (!headers) {
          const h = await slowApp.inject({ method: 'GET', url: '/health' });
          expect(h.json()).toMatchObject({ influx: { ok: false } });
        }
        proxy.clear();
      }
      // A load still waiting on the stalled database when it recovered fails at its own deadline; after that
      // the report is served (waitFor: up to its timeout, no fixed sleep).
      await waitFor(async () => (await report()).statusCode === 200, { what: 'the report served again' });
      expect(lines.filter((l) => l.msg === 'request failed')).toEqual([]);
    } finally {
      await slowApp.close();
      await slow.stop();
      await proxy.stop();
    }
  });
});
