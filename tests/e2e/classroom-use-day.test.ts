import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { agentConfigSchema, ClassroomAgent } from '../../agents/classroom/agent.js';
import { TokenStore } from '../../api/tokens.js';
import { Collector, collectorConfigSchema } from '../../collector/collector.js';
import {
  type CalendarDef,
  Calendars,
  dateOf,
  dayNumber,
  localDate,
  localMidnightMs,
  weekdayOf,
} from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import type { Registry } from '../../contracts/registry.js';
import { PjlinkSimulator } from '../../dev/pjlink-sim.js';
import { rollupConfigSchema } from '../../rollup/config.js';
import { Rollup } from '../../rollup/rollup.js';
import { testApp } from '../helpers/api.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * Issue #16 item 6, the whole chain for one school day: the real classroom agent (in process, its clock the
 * test's through `deps.now`) reading a panel over PJLink (the simulator) and the teaching computer's activity
 * through the `command` activity source — `cat` of a file the test rewrites before each reading, so the test
 * plays the computer: what `GetLastInputInfo` and the foreground window would say — publishing to Mosquitto (the
 * production broker; anonymous on loopback, access control being tests/e2e/adversary.test.ts's subject), the
 * real collector (registry, default `collector.usage`: activeWithinS 300, teachingIdleWithinS 1,200) writing to
 * a real influxd, the real rollup for that date and calendar, and the API's audit over HTTP (inject). (The
 * embedded broker would do as well but holds each QoS 1 PUBACK about 40 ms, its sockets without TCP_NODELAY:
 * 590 readings would take 30 s instead of 5.)
 *
 * The day: the last weekday before today (China Standard Time), so its readings are real past timestamps that
 * the collector accepts with its real clock (`limits.maxPastS` 14 days; the publisher does not look at `ts`).
 * The calendar is api/README.md's worked example (Definitions 8): six 45-minute periods. One reading a minute
 * from 07:20 to 17:10; the panel is switched on at 07:30 and to standby at 17:00. 希沃白板 (`EasiNote.exe`) is in
 * front all day (Seewo panels boot into it); the teacher touches the panel only in the second and the fifth
 * period, every five minutes from 90 s into the period; otherwise the idle time grows from the last touch (from
 * the computer's start at 07:20 before the first one). Every expected figure below is derived from these
 * definitions, with the arithmetic in a comment.
 *
 * Beside it a hostile agent (panel pn-2) whose activity tool sends a window-title-like "foreground"
 * (a file name: 期末试卷 三年级二班.pptx) and a window title: the agent refuses the name (the tool's error,
 * counted), its readings go without activity and are judged by power as docs/usage.md says, and neither the
 * name nor the title reaches the database.
 */
const SCHOOL = '3301060001';
const REGION_PATH = '330000/330100/330106';
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
    { id: 'pn-1', school: SCHOOL, classroom: 'c1', kind: 'panel' },
    { id: 'pn-2', school: SCHOOL, classroom: 'c2', kind: 'panel' },
  ],
};

// ---- The scenario ----------------------------------------------------------------------------------------

/** The last Monday–Friday before today, China Standard Time (at most 3 days back: within `maxPastS`). */
function lastWeekday(nowMs: number): string {
  let n = dayNumber(localDate(nowMs)) - 1;
  while (['sat', 'sun'].includes(weekdayOf(dateOf(n)))) n--;
  return dateOf(n);
}
const DAY = lastWeekday(Date.now());
const at = (hhmm: string) => Date.parse(`${DAY}T${hhmm}:00+08:00`);
const MIN = 60_000;

/** Six 45-minute class periods, Monday to Friday: api/README.md's worked example. */
const TIMETABLE = ['08:00-08:45', '08:55-09:40', '10:00-10:45', '10:55-11:40', '14:20-15:05', '15:15-16:00'];
const PERIODS = TIMETABLE.map((p) => {
  const [a, b] = p.split('-') as [string, string];
  return { startMs: at(a), endMs: at(b) };
});
const CALENDAR: CalendarDef = {
  id: 'xihu',
  regions: ['330106'],
  terms: [{ name: '本学期', start: dateOf(dayNumber(DAY) - 60), end: dateOf(dayNumber(DAY) + 60) }],
  periods: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, TIMETABLE])),
};
/** The touched periods: the second and the fifth. */
const TOUCHED = [1, 4];
const FIRST_TOUCH_AFTER_MS = 90_000;
const TOUCH_EVERY_MS = 5 * MIN;
/** Every touch of the day: from 90 s into each touched period, every 5 minutes, while the period lasts. */
const TOUCHES = TOUCHED.flatMap((i) => {
  const p = PERIODS[i]!;
  const out: number[] = [];
  for (let t = p.startMs + FIRST_TOUCH_AFTER_MS; t < p.endMs; t += TOUCH_EVERY_MS) out.push(t);
  return out;
});
const COMPUTER_START = at('07:20');
const READINGS_FROM = at('07:20');
const READINGS_TO = at('17:10'); // exclusive
const POWER_ON = at('07:30');
const POWER_OFF = at('17:00');
const READINGS = Array.from(
  { length: (READINGS_TO - READINGS_FROM) / MIN },
  (_, i) => READINGS_FROM + i * MIN,
);

/** What the teaching computer says at `ts`: seconds since the last touch (or since it started). */
function idleAt(ts: number): number {
  const last = Math.max(COMPUTER_START, ...TOUCHES.filter((t) => t <= ts));
  return Math.floor((ts - last) / 1000);
}

// ---- The rule and the rollup, as configured by default (not restated here) ---------------------------------
const USAGE = collectorConfigSchema.parse({}).usage;
const BUCKET_S = rollupConfigSchema.parse({}).bucketS;
const BUCKET_MS = BUCKET_S * 1000;
const HOUR_BUCKETS = 3_600 / BUCKET_S;
/** As the API rounds hours (api/README.md, Definitions 7): 2 decimals, half away from zero. */
const hours = (buckets: number) => Math.round((buckets / HOUR_BUCKETS) * 100) / 100;

const influxd = new Influxd();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-e2e-classroom-day-'));
const cleanups: (() => Promise<void>)[] = [];
let storage: Storage;
let registry: RegistryStore;
let token: string;
let collector: Collector;
let rollup: Rollup;
let app: Awaited<ReturnType<typeof testApp>>;
const calendars = new Calendars([CALENDAR]);
const agentStats: Record<string, ReturnType<ClassroomAgent['stats']>> = {};

/** One device's display points as stored. */
const displayRows = (device: string) =>
  storage.rows(`SELECT * FROM display WHERE device = '${device}' ORDER BY time`);

/**
 * Runs one agent over the given reading times: before each reading the test sets the agent's clock, the
 * projector's power and the activity tool's output; the first reading is the one `start()` takes, the rest are
 * `tick()`s, each awaited (published with the broker's PUBACK). Resolves once the collector has stored them all.
 */
async function runAgent(
  device: string,
  classroom: string,
  times: number[],
  scene: (ts: number) => { power: 0 | 1; activity: Record<string, unknown> },
  brokerUrl: string,
): Promise<void> {
  const projector = new PjlinkSimulator({ power: 0, input: '31', lampHours: 1200, errors: '000000' });
  const port = await projector.start();
  cleanups.push(() => projector.stop());
  const activityFile = join(tmp, `${device}-activity.json`);
  let now = times[0]!;
  const set = (ts: number) => {
    now = ts;
    const s = scene(ts);
    projector.state.power = s.power;
    writeFileSync(activityFile, JSON.stringify(s.activity));
  };
  set(times[0]!);
  const agent = new ClassroomAgent(
    agentConfigSchema.parse({
      school: SCHOOL,
      device,
      classroom,
      kind: 'panel',
      intervalS: 3_600, // no reading of its own during the test: the test ticks it
      mqtt: { url: brokerUrl, reconnectMinMs: 50 },
      spool: { dir: join(tmp, `${device}-spool`) },
      // A reading queued before the connection is replayed at once, not at a real agent's 10 a second.
      replayRatePerSec: 10_000,
      host: { enabled: false },
      display: { source: 'pjlink', host: '127.0.0.1', port, timeoutMs: 5_000 },
      activity: { source: 'command', command: 'cat', args: [activityFile], timeoutMs: 10_000 },
    }),
    { log: captureLogger(device).log, now: () => now },
  );
  try {
    await agent.start();
    // The reading start() takes: stored before the clock moves on (it reads the clock after PJLink).
    await waitFor(async () => (await displayRows(device)).length === 1, {
      what: `${device}'s first reading stored`,
      timeoutMs: 20_000,
    });
    for (const ts of times.slice(1)) {
      set(ts);
      await agent.tick();
    }
    await waitFor(async () => (await displayRows(device)).length === times.length, {
      what: `${device}'s ${times.length} readings stored`,
      timeoutMs: 20_000,
    });
  } finally {
    await agent.stop();
    agentStats[device] = agent.stats();
  }
}

/** The hostile tool's output: a file name where an executable name belongs, and a window title. */
const HOSTILE_FOREGROUND = '期末试卷 三年级二班.pptx';
const HOSTILE_TITLE = '期末试卷 三年级二班.pptx - WPS 演示';
/** pn-2's readings: in the first period, touched 30 s before, then 900 s without input. */
const HOSTILE = [
  { ts: at('08:10'), idleS: 30 },
  { ts: at('08:20'), idleS: 900 },
];

beforeAll(async () => {
  registry = new RegistryStore(join(tmp, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(REGISTRY)) }]);
  const tokens = new TokenStore(join(tmp, 'tokens.json')).load();
  token = tokens.add('西湖区教育局', 'auditor', REGION_PATH).token;
  await influxd.start();

  const broker = await new Mosquitto().start();
  cleanups.push(() => broker.dispose());
  const collectorStorage = testStorage(influxd.url, { database: 'classroomday' }).storage;
  await collectorStorage.start();
  cleanups.push(() => collectorStorage.stop());
  collector = new Collector(
    collectorConfigSchema.parse({
      mqtt: { url: broker.url, clientId: 'collector-day', reconnectMinMs: 50 },
      metrics: { port: 0 },
      registryFile: registry.path,
    }),
    { log: captureLogger('collector').log, storage: collectorStorage },
  );
  await collector.start();
  cleanups.push(() => collector.stop());
  await collector.ready();

  // The API process's storage (the rollup and the reports), on the same database.
  storage = testStorage(influxd.url, { database: 'classroomday' }).storage;
  await storage.start();

  await runAgent(
    'pn-1',
    'c1',
    READINGS,
    (ts) => ({
      power: ts >= POWER_ON && ts < POWER_OFF ? 1 : 0,
      activity: { idleS: idleAt(ts), foreground: 'EasiNote.exe', screenOn: true },
    }),
    broker.url,
  );
  const hostile = new Map(HOSTILE.map((h) => [h.ts, h.idleS]));
  await runAgent(
    'pn-2',
    'c2',
    HOSTILE.map((h) => h.ts),
    (ts) => ({
      power: 1,
      activity: {
        idleS: hostile.get(ts),
        foreground: HOSTILE_FOREGROUND,
        title: HOSTILE_TITLE,
        screenOn: true,
      },
    }),
    broker.url,
  );

  rollup = new Rollup({
    storage,
    registry: () => registry.index,
    calendars: () => calendars,
    log: silentLogger(),
    bucketS: BUCKET_S,
  });
  app = await testApp({
    registry,
    calendars,
    tokens,
    storage,
    live: new LiveState(undefined, silentLogger()),
  });
}, 120_000);

afterAll(async () => {
  await app?.close();
  for (const c of cleanups.splice(0).reverse()) await c();
  await storage?.stop();
  await influxd.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const get = (url: string) =>
  app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
const usageDay = async (device: string) => {
  const [row] = await storage.rows(
    `SELECT * FROM usage_day WHERE device = '${device}' AND time = ${localMidnightMs(DAY)}ms`,
  );
  return row!;
};

// ---- The expected figures, from the scenario -------------------------------------------------------------
/** Buckets per 45-minute period: 45 × 60 ÷ 300 = 9; six periods: 54 teaching buckets (4.5 h). */
const PERIOD_BUCKETS = (PERIODS[0]!.endMs - PERIODS[0]!.startMs) / BUCKET_MS;
const TEACHING_BUCKETS = PERIODS.length * PERIOD_BUCKETS;
/**
 * After a lesson 希沃白板 stays in front: its readings stay in use while idleS ≤ teachingIdleWithinS (1,200 s).
 * Per period, its buckets holding a reading in use carried over from the touched period before it:
 * - period 3 (10:00): the last touch of period 2 is 08:55 + 90 s + 8 × 5 min = 09:36:30, in use to 09:56:30 —
 *   within the 20-minute break (09:40–10:00): 0 buckets;
 * - period 6 (15:15): the last touch of period 5 is 14:20 + 90 s + 8 × 5 min = 15:01:30, in use to 15:21:30;
 *   readings 15:15 … 15:21 are in use: buckets 15:15 and 15:20, 2 buckets (10 minutes of 45: under the half, so
 *   period 6 is not used — the reason for the 20 minutes, docs/usage.md).
 */
function carriedInto(period: number): number {
  const prev = TOUCHED.find((i) => i === period - 1);
  if (prev === undefined) return 0;
  const p = PERIODS[period]!;
  const lastTouch = Math.max(...TOUCHES.filter((t) => t < PERIODS[prev]!.endMs));
  // The last reading (one a minute) with idleS ≤ teachingIdleWithinS.
  const lastInUse = Math.floor((lastTouch + USAGE.teachingIdleWithinS * 1000) / MIN) * MIN;
  if (lastInUse < p.startMs) return 0;
  return Math.floor((Math.min(lastInUse, p.endMs - 1) - p.startMs) / BUCKET_MS) + 1;
}
/**
 * In-use buckets per period: a touched period has a touch in each of its buckets (every 5 minutes from 90 s in),
 * so all 9 are in use; the others only what is carried over: [0, 9, 0, 0, 9, 2].
 */
const USE_PER_PERIOD = PERIODS.map((_, i) => (TOUCHED.includes(i) ? PERIOD_BUCKETS : carriedInto(i)));
/** 9 + 9 + 2 = 20 buckets in use (1.67 h); on but unused 54 − 20 = 34 (2.83 h). */
const USE_BUCKETS = USE_PER_PERIOD.reduce((a, b) => a + b, 0);
/** A period is used with at least half its buckets in use (Definitions 4): 9 ≥ 4.5 twice, 2 < 4.5. */
const USED_PERIODS = USE_PER_PERIOD.flatMap((u, i) => (u * 2 >= PERIOD_BUCKETS ? [i] : []));
/**
 * Left on (on outside teaching time): 07:30–08:00 before the first period, 30 ÷ 5 = 6 buckets, and 16:00–17:00
 * after the last, 60 ÷ 5 = 12 buckets: 18 buckets = 1.5 h. The readings 07:20–07:29 and 17:00–17:09 (standby)
 * and the breaks between periods count as neither.
 */
const LEFT_ON_BUCKETS =
  (PERIODS[0]!.startMs - POWER_ON) / BUCKET_MS + (POWER_OFF - PERIODS.at(-1)!.endMs) / BUCKET_MS;
/** One teaching day of a five-day week: 0.2 teaching week. */
const WEEKS = 1 / Object.keys(CALENDAR.periods!).length;

describe('one school day of a panel on all day, used in two periods: agent → broker → collector → influxd → rollup → audit', () => {
  it('carries every reading to influxd, judged by the default rule', async () => {
    expect(USED_PERIODS).toEqual(TOUCHED); // the scenario is what it says
    expect(collector.stats().rejected).toEqual({});
    expect(agentStats['pn-1']).toMatchObject({
      readings: READINGS.length, // 07:20 to 17:10, one a minute: 590
      displayErrors: 0,
      activityErrors: 0,
      lost: 0,
    });
    const rows = await displayRows('pn-1');
    expect(rows.map((r) => r.time)).toEqual(READINGS);
    for (const r of rows) {
      const ts = r.time as number;
      const idleS = idleAt(ts);
      const on = ts >= POWER_ON && ts < POWER_OFF;
      // docs/usage.md, "The rule": in use = on ∧ (active ∨ (teachingApp ∧ attended)), teachingApp always true
      // here (EasiNote.exe in front all day).
      const inUse = on && (idleS <= USAGE.activeWithinS || idleS <= USAGE.teachingIdleWithinS);
      expect(r, new Date(ts).toISOString()).toMatchObject({
        school: SCHOOL,
        classroom: 'c1',
        source: 'pjlink',
        power: on ? 'on' : 'off',
        on: on ? 1 : 0,
        in_use: inUse ? 1 : 0,
        active: idleS <= USAGE.activeWithinS ? 1 : 0,
        teaching_app: 1,
        foreground: 'EasiNote.exe',
        idle_s: idleS,
        use_basis: 'activity',
      });
    }
    // Two readings that tell the rule apart: 09:50, untouched for 13.5 minutes after the lesson, is still in
    // use (EasiNote, input within 20 minutes); 10:00, 23.5 minutes, is on but unused.
    const byTime = new Map(rows.map((r) => [r.time as number, r]));
    expect(byTime.get(at('09:50'))).toMatchObject({ idle_s: 810, active: 0, in_use: 1 });
    expect(byTime.get(at('10:00'))).toMatchObject({ idle_s: 1_410, active: 0, in_use: 0, on: 1 });
  });

  it('rolls up the day: used in exactly the two touched periods, on but unused for the rest, left on around class', async () => {
    // Rolled up as each period ends ("today so far": only the ended periods count), the count of periods used
    // steps up exactly at the touched ones: [0, 1, 1, 1, 2, 2].
    const steps: { periodsUsed: unknown; use: unknown }[] = [];
    for (const p of PERIODS) {
      await rollup.day(DAY, p.endMs);
      const r = await usageDay('pn-1');
      steps.push({ periodsUsed: r.periods_used, use: r.use_b });
    }
    let used = 0;
    let use = 0;
    expect(steps).toEqual(
      PERIODS.map((_, i) => {
        if (USED_PERIODS.includes(i)) used++;
        use += USE_PER_PERIOD[i]!;
        return { periodsUsed: used, use };
      }),
    );
    // The whole day.
    await rollup.day(DAY);
    expect(await usageDay('pn-1')).toMatchObject({
      teaching_day: 1,
      teaching_b: TEACHING_BUCKETS, // 6 × 9 = 54
      online_b: TEACHING_BUCKETS,
      on_b: TEACHING_BUCKETS,
      use_b: USE_BUCKETS, // 9 + 9 + 2 = 20
      unused_b: TEACHING_BUCKETS - USE_BUCKETS, // 54 − 20 = 34
      periods: PERIODS.length,
      periods_used: TOUCHED.length, // 2
      left_on_b: LEFT_ON_BUCKETS, // 6 + 12 = 18
      activity_b: TEACHING_BUCKETS,
    });
  });

  it('audits the panel and its classroom: 2 periods used, on but unused the rest, left on before and after class, by activity', async () => {
    await rollup.day(DAY);
    const r = await get(`/v1/audit/devices?period=${DAY}`);
    expect(r.statusCode, r.body).toBe(200);
    const items = r.json().items as Record<string, unknown>[];
    const figures = {
      poweredOnHours: hours(TEACHING_BUCKETS), // 54 ÷ 12 = 4.5
      inUseHours: hours(USE_BUCKETS), // 20 ÷ 12 = 1.666… → 1.67
      onUnusedHours: hours(TEACHING_BUCKETS - USE_BUCKETS), // 34 ÷ 12 = 2.833… → 2.83
      leftOnHours: hours(LEFT_ON_BUCKETS), // 18 ÷ 12 = 1.5
      periodsUsed: TOUCHED.length, // 2
      usedHoursPerWeek: Math.round((USE_BUCKETS / HOUR_BUCKETS / WEEKS) * 100) / 100, // 1.666… ÷ 0.2 = 8.33
      useBasis: 'activity',
    };
    expect(items.find((d) => d.id === 'pn-1')).toMatchObject({
      ...figures,
      daysUsed: 1,
      teachingDays: 1,
    });
    const rooms = await get(`/v1/attainment/classrooms?period=${DAY}`);
    expect(rooms.statusCode, rooms.body).toBe(200);
    const c1 = (rooms.json().items as Record<string, unknown>[]).find((c) => c.id === 'c1');
    const { poweredOnHours, ...rest } = figures;
    expect(c1).toMatchObject({
      ...rest,
      onHours: poweredOnHours,
      periodsUsedPerWeek: TOUCHED.length / WEEKS, // 2 ÷ 0.2 = 10
    });
  });

  it("refuses the hostile tool's file name at the agent (an error, counted), judges its readings by power and stores no title", async () => {
    // The command source's foreground must be a program's name: a document's is the tool's error, so the
    // reading goes without activity (agents/sources/activity/command.ts), counted in activityErrors.
    expect(agentStats['pn-2']).toMatchObject({
      readings: HOSTILE.length,
      activityErrors: HOSTILE.length,
      lost: 0,
    });
    const rows = await displayRows('pn-2');
    // Without activity evidence, judged by power (docs/usage.md): the panel on with an input selected.
    expect(rows).toMatchObject(HOSTILE.map((h) => ({ time: h.ts, on: 1, in_use: 1, use_basis: 'power' })));
    expect(rows.map((r) => [r.idle_s ?? null, r.foreground ?? null, r.teaching_app ?? null])).toEqual(
      HOSTILE.map(() => [null, null, null]),
    );
    // Counted in the day like any reading (one bucket each of period 1, 08:10 and 08:20), with no activity
    // evidence: its use rests on power.
    await rollup.day(DAY);
    expect(await usageDay('pn-2')).toMatchObject({
      on_b: HOSTILE.length, // 2
      use_b: HOSTILE.length, // 2
      unused_b: 0,
      activity_b: 0,
      periods_used: 0, // 2 of 9 buckets
    });
    // The window title never left the computer, and nothing of the file name is a tag (no series).
    const everything = JSON.stringify(await storage.rows(`SELECT * FROM /.*/ WHERE device = 'pn-2'`));
    expect(everything).not.toContain('WPS 演示');
    const series = JSON.stringify(await storage.rows('SHOW SERIES'));
    expect(series).not.toMatch(/期末|三年级/);
  });

  /**
   * A document's name as the foreground: the agent does not send it (not a program's name) and the collector
   * would not store it (only teaching applications' names are kept: docs/usage.md, "Stored").
   */
  it('stores nothing of the file name sent as the foreground (only teaching applications are stored)', async () => {
    expect((await displayRows('pn-2')).map((r) => r.foreground ?? null)).toEqual(HOSTILE.map(() => null));
    const everything = JSON.stringify(await storage.rows(`SELECT * FROM /.*/ WHERE device = 'pn-2'`));
    expect(everything).not.toMatch(/期末|三年级/);
  });
});
