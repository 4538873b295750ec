import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ExcelJS from 'exceljs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  columnLetter,
  ImportError,
  type ImportFile,
  type ImportIssue,
} from '../../common/registry/import.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Registry } from '../../contracts/registry.js';
import { CITY as FIXTURE } from '../helpers/city.js';

const FIXTURES = new URL('../fixtures/registry/', import.meta.url).pathname;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-registry-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const store = () => new RegistryStore(join(dir, 'registry.json')).load();
const yamlFile = (doc: unknown, name = 'city.yaml'): ImportFile => ({
  name,
  data: Buffer.from(stringify(doc)),
});

/** A province, a city, two counties; three schools; classrooms and devices. */
const CITY: Registry = {
  regions: FIXTURE.regions,
  schools: [
    {
      id: '3301060001',
      name: '西湖区第一小学',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 24,
      students: 1080,
      teachers: 72,
      uplinkDevice: 'gw-0001',
      uplinkInterface: 'GigabitEthernet0/0/1',
      contractedMbps: 200,
    },
    {
      id: '3301060002',
      name: '西湖区转塘教学点',
      region: '330106',
      area: 'rural',
      level: 'teaching_point',
      classes: 3,
      students: 45,
      teachers: 5,
    },
    {
      id: '3301080001',
      name: '滨江区实验初中',
      region: '330108',
      area: 'urban',
      level: 'junior',
      classes: 18,
      students: 810,
      teachers: 60,
    },
  ],
  classrooms: [
    { id: 'c-0001-101', school: '3301060001', name: '一(1)班', isClass: true },
    { id: 'c-0001-lab', school: '3301060001', name: '科学实验室, 二楼', isClass: false },
    { id: 'c-0801-201', school: '3301080001', name: '七(1)班', isClass: true },
  ],
  devices: [
    { id: 'gw-0001', school: '3301060001', kind: 'router', vendor: 'Huawei', model: 'AR6120' },
    {
      id: 'wb-0001-101',
      school: '3301060001',
      classroom: 'c-0001-101',
      kind: 'panel',
      serial: 'SW86-2023-000123',
      batch: '2023-西湖-班班通-02',
      purchasedOn: '2023-08-15',
    },
    { id: 'pc-0001-101', school: '3301060001', classroom: 'c-0001-101', kind: 'teacher_pc' },
    {
      id: 'pj-0801-201',
      school: '3301080001',
      classroom: 'c-0801-201',
      kind: 'projector',
      batch: '2019-滨江-01',
    },
  ],
};

/** The same city as a bureau's workbook: Chinese sheet names and headers, Excel numbers, dates and 是/否. */
async function cityWorkbook(edit?: (wb: ExcelJS.Workbook) => void): Promise<ImportFile> {
  const wb = new ExcelJS.Workbook();
  const sheet = (name: string, header: string[], rows: unknown[][]) => {
    const ws = wb.addWorksheet(name);
    ws.addRow(header);
    for (const r of rows) ws.addRow(r);
  };
  wb.addWorksheet('说明').addRow(['本表由区教育局装备中心维护']); // a notes sheet is ignored
  sheet(
    '区域',
    ['区划代码', '名称', '级别', '上级代码'],
    [
      [330000, '浙江省', '省', null],
      [330100, '杭州市', '市', 330000],
      [330106, '西湖区', '区', 330100],
      [330108, '滨江区', '区', 330100],
    ],
  );
  sheet(
    '学校',
    [
      '学校标识码',
      '学校名称',
      '所属区划代码',
      '城乡',
      '办学类型',
      '班级数',
      '学生数',
      '教师数',
      '出口设备',
      '出口接口',
      '签约带宽',
    ],
    [
      [
        3301060001,
        '西湖区第一小学',
        330106,
        '城区',
        '小学',
        24,
        1080,
        72,
        'gw-0001',
        'GigabitEthernet0/0/1',
        200,
      ],
      [3301060002, '西湖区转塘教学点', 330106, '农村', '教学点', 3, 45, 5, null, null, null],
      [3301080001, '滨江区实验初中', 330108, '城区', '初中', 18, 810, 60, null, null, null],
    ],
  );
  sheet(
    '教室',
    ['教室编号', '学校标识码', '教室名称', '班级教室'],
    [
      ['c-0001-101', 3301060001, '一(1)班', '是'],
      ['c-0001-lab', 3301060001, { richText: [{ text: '科学实验室' }, { text: ', 二楼' }] }, '否'],
      ['c-0801-201', 3301080001, '七(1)班', '是'],
    ],
  );
  sheet(
    '设备',
    ['设备编号', '学校标识码', '教室编号', '设备类型', '序列号', '品牌', '型号', '采购批次', '采购日期'],
    [
      ['gw-0001', 3301060001, null, '路由器', null, 'Huawei', 'AR6120', null, null],
      [
        'wb-0001-101',
        3301060001,
        'c-0001-101',
        '一体机',
        'SW86-2023-000123',
        null,
        null,
        '2023-西湖-班班通-02',
        new Date(Date.UTC(2023, 7, 15)),
      ],
      ['pc-0001-101', 3301060001, 'c-0001-101', '教师机', null, null, null, null, null],
      ['pj-0801-201', 3301080001, 'c-0801-201', '投影仪', null, null, null, '2019-滨江-01', null],
    ],
  );
  edit?.(wb);
  return { name: '杭州市设备台账.xlsx', data: Buffer.from(await wb.xlsx.writeBuffer()) };
}

async function importError(p: Promise<unknown>): Promise<ImportIssue[]> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ImportError);
  return (e as ImportError).issues;
}

describe('registry import', () => {
  it('imports a YAML registry; region paths and scopes follow the hierarchy', async () => {
    const s = store();
    expect(await s.import([yamlFile(CITY)])).toEqual({ regions: 4, schools: 3, classrooms: 3, devices: 4 });
    const idx = s.index;
    expect(idx.schoolPath('3301060001')).toBe('330000/330100/330106');
    expect(idx.schoolsInScope('330000/330100/330106').map((x) => x.id)).toEqual(['3301060001', '3301060002']);
    expect(idx.schoolsInScope('330000/330100')).toHaveLength(3);
    expect(idx.schoolsInScope('330000/330100/33010')).toHaveLength(0);
    expect(idx.devicesIn('3301060001', 'c-0001-101').map((d) => d.id)).toEqual([
      'wb-0001-101',
      'pc-0001-101',
    ]);
    // Persisted, and read back identically by a new store.
    expect(store().index.data).toEqual(idx.data);
  });

  it('imports the same city from a bureau workbook (Chinese sheets, headers and values, Excel numbers and dates)', async () => {
    const s = store();
    await s.import([await cityWorkbook()]);
    expect(s.index.data).toEqual(CITY);
  });

  it('imports CSV in GBK (as Excel writes it in China) and UTF-8 with a BOM, one entity per file', async () => {
    const s = store();
    await s.import([yamlFile({ regions: CITY.regions })]);
    await s.import(
      ['学校名单.gbk.csv', 'classrooms.csv'].map((name) => ({
        name,
        data: readFileSync(join(FIXTURES, name)),
      })),
    );
    expect(s.index.schools.get('3301060002')).toEqual({
      id: '3301060002',
      name: '西湖区转塘教学点',
      region: '330106',
      area: 'rural',
      level: 'teaching_point',
      classes: 3,
      students: 45,
      teachers: 5,
    });
    expect(s.index.classroom('3301060001', 'c-0001-lab')).toEqual({
      id: 'c-0001-lab',
      school: '3301060001',
      name: '科学实验室, 二楼',
      isClass: false,
    });
  });

  it('names file, row and column of every bad cell, and changes nothing', async () => {
    const s = store();
    await s.import([yamlFile(CITY)]);
    const before = readFileSync(s.path);
    const wb = await cityWorkbook((w) => {
      const schools = w.getWorksheet('学校')!;
      schools.getCell('F3').value = '三十'; // classes of row 3
      schools.getCell('D4').value = '郊区'; // not urban/rural
      const devices = w.getWorksheet('设备')!;
      devices.getCell('D3').value = '电视机'; // not a device kind
      devices.getCell('I4').value = '2023-02-30'; // no such date
      devices.getCell('A5').value = 'gw 0001'; // space in an id
    });
    const issues = await importError(s.import([wb]));
    const where = issues.map((i) => `${i.file}|${i.row}|${i.column}`);
    expect(where).toEqual(
      expect.arrayContaining([
        '杭州市设备台账.xlsx [学校]|3|F (班级数)',
        '杭州市设备台账.xlsx [学校]|4|D (城乡)',
        '杭州市设备台账.xlsx [设备]|3|D (设备类型)',
        '杭州市设备台账.xlsx [设备]|4|I (采购日期)',
        '杭州市设备台账.xlsx [设备]|5|A (设备编号)',
      ]),
    );
    expect(issues).toHaveLength(5);
    expect(issues.find((i) => i.column === 'F (班级数)')!.message).toMatch(/三十.*not a number/);
    expect(issues.find((i) => i.column === 'D (城乡)')!.message).toMatch(/urban \(城区\)/);
    expect(readFileSync(s.path)).toEqual(before);
    expect(store().index.data).toEqual(CITY);
  });

  it('checks references and duplicates across the whole import, naming the rows', async () => {
    const s = store();
    const bad = structuredClone(CITY);
    bad.schools.push({ ...bad.schools[2]!, id: '3301090001', region: '330109' }); // unknown county
    bad.devices.push({ id: 'pj-x', school: '3301060002', classroom: 'c-0801-201', kind: 'projector' }); // other school's room
    bad.devices.push({ id: 'gw-0001', school: '3301060001', kind: 'switch' }); // duplicate id
    bad.schools[1]!.uplinkDevice = 'wb-0001-101'; // another school's panel
    const issues = await importError(s.import([yamlFile(bad)]));
    const byMsg = (re: RegExp) => issues.find((i) => re.test(i.message));
    expect(byMsg(/region 330109 is not in the registry/)).toMatchObject({ row: 4, column: 'region' });
    expect(byMsg(/classroom c-0801-201 is not in school 3301060002/)).toMatchObject({
      row: 5,
      column: 'classroom',
    });
    expect(byMsg(/gw-0001 of school 3301060001 is also defined in city.yaml row 1/)).toMatchObject({
      row: 6,
      column: 'id',
    });
    expect(byMsg(/device wb-0001-101 is not in school 3301060002/)).toMatchObject({
      row: 2,
      column: 'uplinkDevice',
    });
    expect(issues).toHaveLength(4);
    expect(s.index.data.schools).toHaveLength(0);
  });

  it('refuses a region called "unassigned": the collector tags unregistered devices with it', async () => {
    const s = store();
    const bad = structuredClone(CITY);
    bad.regions.push({ id: 'unassigned', name: '未分配', level: 'county', parent: bad.regions[0]!.id });
    const issues = await importError(s.import([yamlFile(bad)]));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ column: 'id' });
    expect(issues[0]!.message).toMatch(/"unassigned" is reserved/);
    expect(s.index.data.regions).toHaveLength(0);
  });

  it('identifies classrooms and devices by (school, id): the same ids in two schools are two rooms and two devices', async () => {
    const s = store();
    await s.import([yamlFile(CITY)]);
    const a = CITY.devices.find((d) => d.id === 'wb-0001-101')!;
    const other = CITY.schools.find((x) => x.id !== a.school)!;
    // A careless installer at another school reuses the room and device ids: nothing of school A changes.
    await s.import([
      yamlFile({
        classrooms: [{ id: a.classroom!, school: other.id, name: '别校同号教室', isClass: true }],
        devices: [{ ...a, school: other.id, serial: 'OTHER' }],
      }),
    ]);
    const idx = s.index;
    expect(idx.device(a.school, a.id)).toEqual(a);
    expect(idx.device(other.id, a.id)).toMatchObject({ school: other.id, serial: 'OTHER' });
    expect(idx.classroom(a.school, a.classroom!)!.name).not.toBe('别校同号教室');
    expect(idx.classroom(other.id, a.classroom!)!.name).toBe('别校同号教室');
    expect(idx.devicesIn(other.id, a.classroom!).map((d) => d.school)).toEqual([other.id]);
    expect(idx.data.devices).toHaveLength(CITY.devices.length + 1);
    // A device row naming a classroom of another school is refused, not linked across schools.
    const issues = await importError(
      s.import([
        yamlFile({
          devices: [{ id: 'pj-new', school: other.id, classroom: 'c-0801-201', kind: 'projector' }],
        }),
      ]),
    );
    expect(issues[0]!.message).toMatch(new RegExp(`classroom c-0801-201 is not in school ${other.id}`));
  });

  it('upserts by id, and replace swaps a whole list while keeping references checked', async () => {
    const s = store();
    await s.import([yamlFile(CITY)]);
    await s.import([yamlFile({ schools: [{ ...CITY.schools[1]!, classes: 4 }] })]);
    expect(s.index.schools.get('3301060002')!.classes).toBe(4);
    expect(s.index.data.schools).toHaveLength(3);
    // Replacing classrooms without c-0801-201 would orphan a projector: refused, naming the existing device.
    const issues = await importError(
      s.import([yamlFile({ classrooms: CITY.classrooms.slice(0, 2) })], { replace: ['classrooms'] }),
    );
    expect(issues[0]!.message).toMatch(
      /existing device pj-0801-201 of school 3301080001 .*classroom c-0801-201 is not in school 3301080001/,
    );
  });

  it('rejects garbage with a clear error: wrong headers, missing columns, unreadable files, unknown lists', async () => {
    const s = store();
    const csv = (name: string, text: string): ImportFile => ({ name, data: Buffer.from(text) });
    const issues = await importError(
      s.import([
        csv('schools.csv', 'id,name,region,area,level,classes,students,teachers,colour\n'),
        csv('devices.csv', 'id,school\nx,y\n'),
        csv('stuff.csv', 'a,b\n1,2\n'),
        { name: 'book.xlsx', data: Buffer.from('PK\u0003\u0004 not really a zip') },
        { name: 'notes.txt', data: Buffer.from('hello') },
        csv('registry.yaml', 'schools: 3\nteachers: []\n'),
        { name: 'empty.xlsx', data: Buffer.from(await new ExcelJS.Workbook().xlsx.writeBuffer()) },
      ]),
    );
    const msgs = issues.map((i) => `${i.file}: ${i.column ?? ''} ${i.message}`);
    expect(msgs).toEqual([
      expect.stringMatching(/^schools\.csv: I \(colour\) unknown column/),
      expect.stringMatching(/^devices\.csv: +required column kind \(设备类型\) is missing/),
      expect.stringMatching(/^stuff\.csv: +cannot tell which list/),
      expect.stringMatching(/^book\.xlsx: +cannot be read/),
      expect.stringMatching(/^notes\.txt: +unsupported file type/),
      expect.stringMatching(/^registry\.yaml: +schools must be a list/),
      expect.stringMatching(/^registry\.yaml: teachers unknown list/),
      expect.stringMatching(/^empty\.xlsx: +no sheet named/),
    ]);
  });

  it('sees an import made by another process, and never overwrites it with an older copy', async () => {
    const api = store(); // the running API
    api.checkEveryMs = 0;
    await api.import([yamlFile({ regions: CITY.regions })]);
    const cli = store(); // `npm run api -- import` meanwhile
    await cli.import([yamlFile({ schools: CITY.schools.slice(1, 3) })]);
    expect(api.index.data.schools.map((x) => x.id)).toEqual(['3301060002', '3301080001']);
    // An import through the API merges into the file as it is now.
    await cli.import([yamlFile({ schools: [{ ...CITY.schools[1]!, classes: 9 }] })]);
    await api.import([yamlFile({ schools: [{ ...CITY.schools[2]!, classes: 7 }] })]);
    const onDisk = store().index.data.schools;
    expect(onDisk.map((x) => [x.id, x.classes])).toEqual([
      ['3301060002', 9],
      ['3301080001', 7],
    ]);
  });

  it('updates only the columns a file has; reads unquoted numeric codes in YAML; refuses fractional codes', async () => {
    const s = store();
    await s.import([yamlFile(CITY)]);
    const csv =
      '学校标识码,学校名称,所属区划代码,城乡,办学类型,班级数,学生数,教师数\n3301060001,西湖区第一小学,330106,城区,小学,26,1170,78\n';
    await s.import([{ name: 'schools.csv', data: Buffer.from(csv) }]);
    expect(s.index.schools.get('3301060001')).toMatchObject({
      classes: 26,
      contractedMbps: 200,
      uplinkDevice: 'gw-0001',
    });
    await s.import([
      {
        name: 'r.yaml',
        data: Buffer.from('regions:\n  - { id: 330110, name: 余杭区, level: county, parent: 330100 }\n'),
      },
    ]);
    expect(s.index.regionPath('330110')).toBe('330000/330100/330110');
    const wb = await cityWorkbook((w) => {
      w.getWorksheet('学校')!.getCell('A2').value = 3301060001.5;
    });
    const issues = await importError(s.import([wb]));
    expect(issues).toEqual([
      expect.objectContaining({
        row: 2,
        column: 'A (学校标识码)',
        message: expect.stringMatching(/not a code/),
      }),
    ]);
  });

  it('SNMP port and probe method/port columns: read in Chinese; bad ports and mismatched method/port refused by row and column (#17)', async () => {
    const s = store();
    await s.import([yamlFile(CITY)]);
    const before = readFileSync(s.path);
    const csv = (rows: string) => ({
      name: 'devices.csv',
      data: Buffer.from(`设备编号,学校标识码,设备类型,管理地址,SNMP端口,探测方式,探测端口\n${rows}`),
    });
    const issues = await importError(
      s.import([
        csv(
          [
            'gw-0001,3301060001,路由器,10.1.0.1,0,ICMP,', // port 0
            'gw-0002,3301060001,交换机,10.1.0.2,70000,,', // port too large
            'gw-0003,3301060001,路由器,10.1.0.3,161,TCP,', // tcp without port
            'gw-0004,3301060001,路由器,10.1.0.4,,ICMP,22', // port with icmp
            'gw-0005,3301060001,路由器,10.1.0.5,,,22', // port, method defaulted to icmp
            'gw-0006,3301060001,路由器,10.1.0.6,,udp,53', // no such method
            'gw-0007,3301060001,路由器,10.1.0.7,16.5,,', // not a whole number
            'gw-0008,3301060001,路由器,10.1.0.8,,TCP,-1', // negative port
          ].join('\n'),
        ),
      ]),
    );
    const where = issues.map((i) => `${i.row}|${i.column}|${i.message}`);
    expect(where).toEqual([
      '2|E (SNMP端口)|must be a port number 1..65535',
      '3|E (SNMP端口)|must be a port number 1..65535',
      '4|G (探测端口)|is required with probeMethod tcp',
      '5|G (探测端口)|is only for probeMethod tcp (the method is icmp)',
      '6|G (探测端口)|is only for probeMethod tcp (the method is icmp)',
      '7|F (探测方式)|"udp" is not one of icmp (ICMP), tcp (TCP)',
      '8|E (SNMP端口)|"16.5" must be a whole number',
      '9|G (探测端口)|must be a port number 1..65535',
    ]);
    expect(readFileSync(s.path)).toEqual(before);

    await s.import([
      csv('gw-0001,3301060001,路由器,10.1.0.1,1161,tcp,22\ngw-0009,3301060001,路由器,10.1.0.9,,,\n'),
    ]);
    expect(s.index.device('3301060001', 'gw-0001')).toMatchObject({
      snmpPort: 1161,
      probeMethod: 'tcp',
      probePort: 22,
    });
    expect(s.index.device('3301060001', 'gw-0009')).not.toHaveProperty('probeMethod');
    // A file with only the method column: tcp keeps the stored port; back to icmp drops it.
    const methodOnly = (m: string) => ({
      name: 'devices.csv',
      data: Buffer.from(`设备编号,学校标识码,设备类型,探测方式\ngw-0001,3301060001,路由器,${m}\n`),
    });
    await s.import([methodOnly('TCP')]);
    expect(s.index.device('3301060001', 'gw-0001')).toMatchObject({ probeMethod: 'tcp', probePort: 22 });
    await s.import([methodOnly('ICMP')]);
    expect(s.index.device('3301060001', 'gw-0001')).toMatchObject({ probeMethod: 'icmp', snmpPort: 1161 });
    expect(s.index.device('3301060001', 'gw-0001')).not.toHaveProperty('probePort');
    // A port alone for a device probed by icmp: refused, naming the row.
    const portOnly = {
      name: '设备.csv',
      data: Buffer.from('设备编号,学校标识码,设备类型,探测端口\ngw-0001,3301060001,路由器,22\n'),
    };
    expect(await importError(s.import([portOnly]))).toEqual([
      expect.objectContaining({
        row: 2,
        column: 'D (探测端口)',
        message: expect.stringMatching(/only for probeMethod tcp/),
      }),
    ]);
    // A hand-edited registry file with tcp and no port stops start-up naming the device.
    const path = join(dir, 'hand.json');
    writeFileSync(path, JSON.stringify({ ...CITY, devices: [{ ...CITY.devices[0]!, probeMethod: 'tcp' }] }));
    expect(() => new RegistryStore(path).load()).toThrow(/probePort.*required with probeMethod tcp/);
  });

  it('a corrupt registry file stops start-up with the file and the reason', () => {
    const path = join(dir, 'registry.json');
    writeFileSync(path, '{"schools": [{"id": "x"}]}');
    expect(() => new RegistryStore(path).load()).toThrow(/registry .*registry\.json: schools\.0\.name/);
    writeFileSync(path, '{"schools": [');
    expect(() => new RegistryStore(path).load()).toThrow(/not JSON/);
  });

  it('spreadsheet column letters run A…Z, AA…', () => {
    expect([0, 25, 26, 27, 701, 702].map(columnLetter)).toEqual(['A', 'Z', 'AA', 'AB', 'ZZ', 'AAA']);
  });
});
