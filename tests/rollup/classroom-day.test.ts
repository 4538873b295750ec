import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TokenStore } from '../../api/tokens.js';
import { collectorConfigSchema } from '../../collector/collector.js';
import { telemetryPoints } from '../../collector/points.js';
import { type CalendarDef, Calendars } from '../../common/calendar.js';
import { UsageJudge } from '../../common/figures/usage.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { AnyPoint } from '../../contracts/influx.js';
import type { Telemetry } from '../../contracts/messages.js';
import type { Registry } from '../../contracts/registry.js';
import { Rollup } from '../../rollup/rollup.js';
import { testApp } from '../helpers/api.js';
import { Influxd, testStorage } from '../helpers/influx.js';

/**
 * The worked example of api/README.md ("Definitions", classroom use), end to end from what the collector writes:
 * a panel on from 07:30 to 17:00 on Thursday 8 October 2026, touched only in its second and fifth class periods,
 * off on Friday, left on from 09:00 to 12:00 on Saturday (no school). The rollup and the audit must show it used in
 * exactly those two periods, on but unused in the other four, and left on before and after class and on Saturday.
 * Beside it, a panel of the same school with a v1 agent (on with an input, "in use" all day): its use rests on
 * power, and the audit says so.
 */
const SCHOOL = '3301060001';
const REGISTRY: Registry = {
  regions: [
    { id: '330000', name: '浙江省', level: 'province' },
    { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
    { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
  ],
  schools: [
    {
      id: SCHOOL,
      name: '西湖区第一小学',
      region: '330106',
      area: 'urban',
      level: 'primary',
      classes: 2,
      students: 90,
      teachers: 6,
    },
  ],
  classrooms: [
    { id: 'c1', school: SCHOOL, name: '一(1)班', isClass: true },
    { id: 'c2', school: SCHOOL, name: '一(2)班', isClass: true },
  ],
  devices: [
    { id: 'pn-1', school: SCHOOL, classroom: 'c1', kind: 'panel', batch: '2024-班班通-01' },
    { id: 'pn-old', school: SCHOOL, classroom: 'c2', kind: 'panel' },
  ],
};
/** Six 45-minute periods (9 five-minute buckets each), Monday to Friday: 54 teaching buckets, 4.5 hours. */
const PERIODS = ['08:00-08:45', '08:55-09:40', '10:00-10:45', '10:55-11:40', '14:20-15:05', '15:15-16:00'];
const CALENDAR: CalendarDef = {
  id: 'xihu',
  regions: ['330106'],
  terms: [{ name: '2026—2027 学年第一学期', start: '2026-09-01', end: '2027-01-22' }],
  periods: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, PERIODS])),
};
const THU = '2026-10-08';
const FRI = '2026-10-09';
const SAT = '2026-10-10';
const at = (date: string, hhmm: string) => Date.parse(`${date}T${hhmm}:00+08:00`);
const USED_PERIODS = [1, 4]; // the second and the fifth

/** The period a moment falls in, or -1 (before, between or after the periods). */
function periodAt(ms: number, date: string): number {
  return PERIODS.findIndex((p) => {
    const [a, b] = p.split('-') as [string, string];
    return ms >= at(date, a) && ms < at(date, b);
  });
}

/** One reading a minute from `from` to `to` (local times), as the collector writes it with the default rule. */
function panelDay(date: string, from: string, to: string, device: string, v: 1 | 2): AnyPoint[] {
  const judge = new UsageJudge(collectorConfigSchema.parse({}).usage);
  const out: AnyPoint[] = [];
  for (let ts = at(date, from); ts < at(date, to); ts += 60_000) {
    const used = USED_PERIODS.includes(periodAt(ts, date));
    const m: Telemetry =
      v === 2
        ? {
            v: 2,
            ts,
            seq: 0,
            kind: 'panel',
            display: { source: 'pjlink', power: 'on', input: '31' },
            // Touched in the used periods; otherwise the desktop in front and nobody at the panel.
            activity: {
              source: 'windows',
              idleS: used ? 20 : 3_600,
              foreground: 'explorer.exe',
              screenOn: true,
            },
          }
        : {
            v: 1,
            ts,
            seq: 0,
            kind: 'panel',
            display: { source: 'pjlink', power: 'on', input: '31' },
            inUse: true,
          };
    out.push(
      ...telemetryPoints(
        SCHOOL,
        device,
        m,
        { kind: 'panel', classroom: device === 'pn-1' ? 'c1' : 'c2', region: '330000/330100/330106' },
        [],
        judge,
      ),
    );
  }
  return out;
}

/**
 * Wednesday 7 October as a rollup before #16 wrote it: five counters per device (`online,on,use,faulty,
 * periodsUsed`), no left-on time, no activity evidence.
 */
const WED = '2026-10-07';
const OLD_DAY: AnyPoint[] = [
  {
    measurement: 'usage_packed_day',
    tags: { region: '330000/330100/330106', school: SCHOOL, part: '0' },
    fields: { devices: 'pn-1:54,54,27,0,3|pn-old:54,54,54,0,6', n: 2, parts: 1, bucket_s: 300 },
    ts: at(WED, '00:00'),
  },
  {
    measurement: 'uplink_day',
    tags: { region: '330000/330100/330106', school: SCHOOL },
    fields: { bucket_s: 300, teaching_b: 54, data_b: 0, up_b: 0 },
    ts: at(WED, '00:00'),
  },
  {
    measurement: 'rollup_day',
    tags: {},
    fields: { devices: 2, schools: 1, duration_ms: 12.5, bucket_s: 300 },
    ts: at(WED, '00:00'),
  },
];

const influxd = new Influxd();
let storage: Storage;
let dir: string;
let registry: RegistryStore;
let token: string;
let app: Awaited<ReturnType<typeof testApp>>;
const calendars = new Calendars([CALENDAR]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-classroom-day-'));
  registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(REGISTRY)) }]);
  const tokens = new TokenStore(join(dir, 'tokens.json')).load();
  token = tokens.add('西湖区教育局', 'auditor', '330000/330100/330106').token;
  await influxd.start();
  storage = testStorage(influxd.url, { database: 'day' }).storage;
  await storage.start();
  storage.write([
    ...OLD_DAY,
    ...panelDay(THU, '07:30', '17:00', 'pn-1', 2),
    ...panelDay(SAT, '09:00', '12:00', 'pn-1', 2),
    ...panelDay(THU, '07:30', '17:00', 'pn-old', 1),
  ]);
  await storage.flush();
  const rollup = new Rollup({
    storage,
    registry: () => registry.index,
    calendars: () => calendars,
    log: silentLogger(),
    bucketS: 300,
  });
  await rollup.range(THU, SAT);
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

const get = (url: string) =>
  app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
const PERIOD = `${THU}..${SAT}`;

describe('a day of one classroom, as the collector writes it, rolled up and audited', () => {
  it('rolls up Thursday: used in exactly the two periods, on but unused in the rest, left on around class', async () => {
    const [thu] = await storage.rows(
      `SELECT * FROM usage_day WHERE device = 'pn-1' AND time = ${at(THU, '00:00')}ms`,
    );
    expect(thu).toMatchObject({
      teaching_day: 1,
      teaching_b: 54,
      online_b: 54,
      on_b: 54,
      use_b: 18, // periods 2 and 5, 9 buckets each
      unused_b: 36, // periods 1, 3, 4 and 6
      periods: 6,
      periods_used: 2,
      left_on_b: 6 + 12, // 07:30–08:00 and 16:00–17:00; the breaks between periods are neither
      activity_b: 54,
    });
    const [sat] = await storage.rows(
      `SELECT * FROM usage_day WHERE device = 'pn-1' AND time = ${at(SAT, '00:00')}ms`,
    );
    // No school on Saturday: no teaching figures, three hours left on — and no uplink_day, so not a teaching day.
    expect(sat).toMatchObject({ teaching_day: 0, teaching_b: null, on_b: null, use_b: null, left_on_b: 36 });
    const uplinkDays = await storage.rows(
      `SELECT teaching_b FROM uplink_day WHERE time >= ${at(THU, '00:00')}ms`,
    );
    expect(uplinkDays.map((r) => new Date(r.time as number).toISOString())).toEqual([
      new Date(at(THU, '00:00')).toISOString(),
      new Date(at(FRI, '00:00')).toISOString(),
    ]);
    // The v1 panel reported "in use" all day: by power, every period used.
    const [old] = await storage.rows(
      `SELECT use_b, unused_b, periods_used, activity_b FROM usage_day WHERE device = 'pn-old' AND time = ${at(THU, '00:00')}ms`,
    );
    expect(old).toMatchObject({ use_b: 54, unused_b: 0, periods_used: 6, activity_b: 0 });
  });

  it('audits the panel as api/README.md "Definitions" says', async () => {
    const r = await get(`/v1/audit/devices?period=${PERIOD}`);
    expect(r.statusCode, r.body).toBe(200);
    const items = r.json().items as Record<string, unknown>[];
    const pn1 = items.find((d) => d.id === 'pn-1');
    expect(pn1).toMatchObject({
      poweredOnHours: 4.5,
      inUseHours: 1.5,
      onUnusedHours: 3,
      leftOnHours: 4.5, // Thursday 0.5 + 1, Saturday 3
      periodsUsed: 2,
      daysUsed: 1,
      teachingDays: 2, // Thursday and Friday
      usedHoursPerWeek: 3.75, // 1.5 h in 2 of 5 teaching days a week
      useBasis: 'activity',
    });
    expect(items.find((d) => d.id === 'pn-old')).toMatchObject({
      inUseHours: 4.5,
      onUnusedHours: 0,
      leftOnHours: 1.5,
      periodsUsed: 6,
      useBasis: 'power',
    });
  });

  it('reports the classroom by its display, and 班班通 counts the two periods only', async () => {
    const r = await get(`/v1/attainment/classrooms?period=${PERIOD}`);
    expect(r.statusCode, r.body).toBe(200);
    const c1 = (r.json().items as Record<string, unknown>[]).find((c) => c.id === 'c1');
    expect(c1).toMatchObject({
      onHours: 4.5,
      inUseHours: 1.5,
      onUnusedHours: 3,
      periodsUsed: 2,
      periodsUsedPerWeek: 5, // 2 periods in 0.4 teaching week, below the 10 of every built-in profile
      usedHoursPerWeek: 3.75,
      leftOnHours: 4.5,
      useBasis: 'activity',
    });
    expect((c1!.reasons as { code: string }[]).map((x) => x.code)).toContain('used_too_little');
  });

  it('reads a day rolled up before #16 (five counters): on but unused is on less in use, nothing left on, by power', async () => {
    const r = await get(`/v1/audit/devices?period=${WED}`);
    expect(r.statusCode, r.body).toBe(200);
    const pn1 = (r.json().items as Record<string, unknown>[]).find((d) => d.id === 'pn-1');
    expect(pn1).toMatchObject({
      poweredOnHours: 4.5,
      inUseHours: 2.25,
      onUnusedHours: 2.25,
      leftOnHours: 0,
      periodsUsed: 3,
      teachingDays: 1,
      useBasis: 'power',
    });
    // Beside the new days, in one period: Wednesday by power, Thursday by activity — mixed.
    const both = await get(`/v1/audit/devices?period=${WED}..${THU}`);
    expect((both.json().items as Record<string, unknown>[]).find((d) => d.id === 'pn-1')).toMatchObject({
      inUseHours: 3.75,
      periodsUsed: 5,
      useBasis: 'mixed',
    });
  });

  it('writes the figures into the audit file with Chinese headers and the basis as label and code', async () => {
    const r = await get(`/v1/audit/devices?period=${PERIOD}&format=csv`);
    expect(r.statusCode, r.body).toBe(200);
    const rows = parseCsv(r.body, { bom: true, columns: true }) as Record<string, string>[];
    const pn1 = rows.find((x) => x.设备编号 === 'pn-1');
    expect(pn1).toMatchObject({
      教学时间开机小时: '4.5',
      教学时间使用小时: '1.5',
      开机未使用小时: '3',
      使用节次: '2',
      周均使用小时: '3.75',
      非教学时间开机小时: '4.5',
      使用判定依据: '按操作活动判定',
      使用判定依据代码: 'activity',
    });
    expect(rows.find((x) => x.设备编号 === 'pn-old')).toMatchObject({
      使用判定依据: '仅按开机判定',
      使用判定依据代码: 'power',
    });
    const rooms = await get(`/v1/attainment/classrooms?period=${PERIOD}&format=csv`);
    expect(rooms.statusCode, rooms.body).toBe(200);
    const c1 = (parseCsv(rooms.body, { bom: true, columns: true }) as Record<string, string>[]).find(
      (x) => x.教室编号 === 'c1',
    );
    expect(c1).toMatchObject({
      教学时间开机小时: '4.5',
      教学时间使用小时: '1.5',
      开机未使用小时: '3',
      使用节次: '2',
      周均使用节次: '5',
      周均使用小时: '3.75',
      非教学时间开机小时: '4.5',
      使用判定依据代码: 'activity',
    });
  });
});
