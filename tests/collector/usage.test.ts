import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector, collectorConfigSchema } from '../../collector/collector.js';
import { NATIONAL_PLATFORM } from '../../common/figures/usage.js';
import { writeFileAtomic } from '../../common/json-file.js';
import type { Storage } from '../../common/storage/storage.js';
import { EXAMPLES } from '../../contracts/examples.js';
import { MAX_IDLE_S } from '../../contracts/messages.js';
import { buildTopic } from '../../contracts/topics.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * Classroom use as the collector judges it (docs/usage.md, "The rule"), through a real Mosquitto into a real
 * InfluxDB: v1 and v2 readings, a teacher PC without a display source, the configured rule, and what a device
 * could send to distort it.
 */
const influxd = new Influxd();
const mosquitto = new Mosquitto();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-usage-'));
const SCHOOL = '3133001234';
const registryFile = join(tmp, 'registry.json');
writeFileAtomic(
  registryFile,
  JSON.stringify({
    regions: [{ id: '330106', name: '西湖区', level: 'county' }],
    schools: [
      {
        id: SCHOOL,
        name: '西湖小学',
        region: '330106',
        area: 'urban',
        level: 'primary',
        classes: 24,
        students: 1000,
        teachers: 60,
      },
    ],
    classrooms: [{ id: 'c0701', school: SCHOOL, name: '七年级1班' }],
    devices: [
      { id: 'pn-v1', school: SCHOOL, classroom: 'c0701', kind: 'panel' },
      { id: 'pn-v2', school: SCHOOL, classroom: 'c0701', kind: 'panel' },
      { id: 'pc-v2', school: SCHOOL, classroom: 'c0701', kind: 'teacher_pc' },
    ],
  }),
);
beforeAll(async () => {
  await Promise.all([influxd.start(), mosquitto.start()]);
});
afterAll(async () => {
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(tmp, { recursive: true, force: true });
});

let dbN = 0;
async function setup(usage: Record<string, unknown> = {}) {
  dbN++;
  const { storage } = testStorage(influxd.url, { database: `use${dbN}` });
  await storage.start();
  const { log } = captureLogger('collector');
  const collector = new Collector(
    collectorConfigSchema.parse({
      mqtt: { url: mosquitto.url, clientId: `use-${dbN}`, reconnectMinMs: 50, reconnectMaxMs: 500 },
      metrics: { port: 0 },
      group: `use${dbN}`,
      registryFile,
      usage,
    }),
    { log, storage },
  );
  await collector.start();
  await collector.ready();
  const pub: MqttClient = await mqtt.connectAsync(mosquitto.url, {
    clientId: `pub-${dbN}`,
    protocolVersion: 5,
  });
  const send = (device: string, channel: 'telemetry' | 'status' | 'iface' | 'event', m: unknown) =>
    pub.publishAsync(buildTopic({ school: SCHOOL, device, channel }), JSON.stringify(m), { qos: 1 });
  const done = async () => {
    await pub.endAsync();
    await collector.stop();
    await storage.stop();
  };
  return { storage, collector, send, done };
}

const t0 = Date.now() - 60_000;
/** A v2 reading of the example panel with this activity (and display, unless `display: undefined`). */
const v2 = (
  i: number,
  activity: Record<string, unknown> | undefined,
  extra: Record<string, unknown> = {},
) => ({
  ...EXAMPLES.telemetry,
  v: 2,
  seq: i,
  ts: t0 + i * 1_000,
  activity: activity && { source: 'windows', ...activity },
  ...extra,
});
const v1 = (i: number, inUse: boolean, power: 'on' | 'off' = 'on') => ({
  ...EXAMPLES.telemetry,
  v: 1,
  seq: i,
  ts: t0 + i * 1_000,
  activity: undefined,
  display: { source: 'pjlink', power, input: '31' },
  inUse,
});

async function displayRows(s: Storage, device: string) {
  return s.rows(
    `SELECT "on", in_use, active, teaching_app, idle_s, screen_on, foreground, use_basis, power FROM display WHERE device = '${device}' ORDER BY time`,
  );
}

describe('classroom use judged by the collector', () => {
  it('stores each part of the judgement: v2 by activity, v1 and v2 without activity by power', async () => {
    const c = await setup();
    await c.send('pn-v2', 'telemetry', v2(1, { idleS: 12, foreground: 'chrome.exe', screenOn: true }));
    await c.send('pn-v2', 'telemetry', v2(2, { idleS: 1_800, foreground: 'chrome.exe', screenOn: true }));
    await c.send('pn-v2', 'telemetry', v2(3, { idleS: 1_000, foreground: 'POWERPNT.EXE' }));
    await c.send('pn-v2', 'telemetry', v2(4, { idleS: 1_000, teachingSite: NATIONAL_PLATFORM }));
    await c.send('pn-v2', 'telemetry', v2(5, { idleS: 0 }, { display: { source: 'pjlink', power: 'off' } }));
    await c.send('pn-v2', 'telemetry', v2(6, undefined)); // v2 without activity: as v1 judged it
    // A v1 agent: its inUse, basis power; the display reported off is not in use whatever inUse says.
    await c.send('pn-v1', 'telemetry', v1(1, true));
    await c.send('pn-v1', 'telemetry', v1(2, false));
    await c.send('pn-v1', 'telemetry', v1(3, true, 'off'));
    // A teacher PC with no display source: a point all the same, on from its screen.
    await c.send(
      'pc-v2',
      'telemetry',
      v2(1, { idleS: 4, screenOn: true }, { kind: 'teacher_pc', display: undefined }),
    );
    await c.send(
      'pc-v2',
      'telemetry',
      v2(2, { idleS: 4, screenOn: false }, { kind: 'teacher_pc', display: undefined }),
    );
    await waitFor(() => c.collector.stats().accepted === 11, { what: '11 accepted' });
    await c.storage.drain();

    const pick = (r: Record<string, unknown>) => [
      r.on,
      r.in_use,
      r.active,
      r.teaching_app,
      r.idle_s,
      r.screen_on,
      r.foreground,
      r.use_basis,
    ];
    expect((await displayRows(c.storage, 'pn-v2')).map(pick)).toEqual([
      // Only a teaching application's name is kept: a browser's is not.
      [1, 1, 1, 0, 12, 1, null, 'activity'],
      [1, 0, 0, 0, 1_800, 1, null, 'activity'], // on but unused
      [1, 1, 0, 1, 1_000, null, 'POWERPNT.EXE', 'activity'],
      [1, 1, 0, 1, 1_000, null, null, 'activity'],
      [0, 0, 1, 0, 0, null, null, 'activity'],
      [1, 1, null, null, null, null, null, 'power'], // on with input 31
    ]);
    expect((await displayRows(c.storage, 'pn-v1')).map(pick)).toEqual([
      [1, 1, null, null, null, null, null, 'power'],
      [1, 0, null, null, null, null, null, 'power'],
      [0, 0, null, null, null, null, null, 'power'],
    ]);
    const pc = await c.storage.rows(
      'SELECT "on", in_use, use_basis, power, kind, classroom FROM display WHERE device = \'pc-v2\' GROUP BY source ORDER BY time',
    );
    expect(pc.map((r) => [r.on, r.in_use, r.use_basis, r.power, r.kind, r.classroom, r.source])).toEqual([
      [1, 1, 'activity', null, 'teacher_pc', 'c0701', ''],
      [0, 0, 'activity', null, 'teacher_pc', 'c0701', ''],
    ]);
    await c.done();
  });

  it('applies collector.usage: the activity window and the teaching applications configured', async () => {
    const c = await setup({ activeWithinS: 60, teachingIdleWithinS: 900, teachingApps: ['MyBoard.exe'] });
    await c.send('pn-v2', 'telemetry', v2(1, { idleS: 120 }));
    await c.send('pn-v2', 'telemetry', v2(2, { idleS: 600, foreground: 'myboard.EXE' }));
    await c.send('pn-v2', 'telemetry', v2(3, { idleS: 600, foreground: 'EasiNote.exe' })); // not in this list
    await c.send('pn-v2', 'telemetry', v2(4, { idleS: 901, foreground: 'MyBoard.exe' })); // left alone too long
    await waitFor(() => c.collector.stats().accepted === 4, { what: '4 accepted' });
    await c.storage.drain();
    expect((await displayRows(c.storage, 'pn-v2')).map((r) => [r.in_use, r.active, r.teaching_app])).toEqual([
      [0, 0, 0],
      [1, 0, 1],
      [0, 0, 0],
      [0, 0, 1],
    ]);
    await c.done();
    // A bad rule stops start-up, naming the key.
    expect(() => collectorConfigSchema.parse({ usage: { activeWithinS: 0 } })).toThrow(/activeWithinS/);
    expect(() => collectorConfigSchema.parse({ usage: { teachingApps: [''] } })).toThrow(/teachingApps/);
    expect(() => collectorConfigSchema.parse({ usage: { teachingApps: ['  '] } })).toThrow(/teachingApps/);
    expect(
      collectorConfigSchema.parse({ usage: { teachingApps: [' EasiNote.exe '] } }).usage.teachingApps,
    ).toEqual(['EasiNote.exe']);
    expect(() =>
      collectorConfigSchema.parse({ usage: { activeWithinS: 600, teachingIdleWithinS: 300 } }),
    ).toThrow(/teachingIdleWithinS must be at least activeWithinS/);
    expect(() => collectorConfigSchema.parse({ usage: { teachingapps: [] } })).toThrow();
  });

  it('drops activity a device could use to leak or distort, counts it, stores nothing of it, keeps the rest of the reading', async () => {
    const c = await setup();
    const hostile: [string, 'telemetry' | 'status' | 'iface' | 'event', unknown][] = [
      // A path (a window's file, a user's folder) is not an executable name: never stored.
      ['pn-v2', 'telemetry', v2(1, { idleS: 1, foreground: 'C:\\Users\\张三\\Desktop\\试卷.pptx' })],
      ['pn-v2', 'telemetry', v2(2, { idleS: 1, foreground: '/home/teacher/Documents/exam.odp' })],
      ['pn-v2', 'telemetry', v2(3, { idleS: 1, foreground: 'EasiNote.exe\nrow2' })],
      ['pn-v2', 'telemetry', v2(4, { idleS: 1, foreground: 'x'.repeat(129) })],
      // Idle time beyond a year, negative or fractional; an unknown source.
      ['pn-v2', 'telemetry', v2(5, { idleS: MAX_IDLE_S + 1 })],
      ['pn-v2', 'telemetry', v2(6, { idleS: -1 })],
      ['pn-v2', 'telemetry', v2(7, { idleS: 1.5 })],
      ['pn-v2', 'telemetry', v2(8, { idleS: 1, teachingSite: 'x'.repeat(65) })],
      ['pn-v2', 'telemetry', { ...v2(9, { idleS: 1 }), activity: { source: 'keylogger', idleS: 1 } }],
      ['pn-v2', 'telemetry', { ...v2(10, { idleS: 1 }), activity: 'busy' }],
      // v2 is telemetry's only: the other channels stay v1.
      ['pn-v2', 'status', { ...EXAMPLES.status, v: 2, ts: t0 }],
      ['pn-v2', 'event', { ...EXAMPLES.event, v: 2, ts: t0 }],
      ['pn-v2', 'iface', { ...EXAMPLES.iface, v: 2, ts: t0 }],
      ['pn-v2', 'telemetry', v2(11, { idleS: 1 }, { v: 3 })],
    ];
    for (const [device, channel, m] of hostile) await c.send(device, channel, m);
    await c.send('pn-v2', 'telemetry', v2(20, { idleS: MAX_IDLE_S, foreground: 'EasiNote.exe' }));
    await waitFor(() => c.collector.stats().received === hostile.length + 1, { what: 'all received' });
    // A bad activity block is dropped and counted, the reading kept (its display and host health are good); a
    // bad version is refused whole.
    expect(c.collector.stats()).toMatchObject({
      accepted: 11,
      rejected: { unsupported_version: 4 },
      dropped: { activity_invalid: 10 },
    });
    const metrics = await (await fetch(`http://127.0.0.1:${c.collector.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/cfm_collector_entries_dropped_total\{reason="activity_invalid"\} 10/);
    expect(metrics).toMatch(/cfm_collector_messages_rejected_total\{reason="unsupported_version"\} 4/);
    await c.storage.drain();
    // The ten readings without their activity, judged by power (on with an input selected); the good one by its
    // activity: a year idle with EasiNote in front is a panel left alone, not in use.
    const rows = await displayRows(c.storage, 'pn-v2');
    expect(
      rows.map((r) => [r.idle_s, r.foreground, r.in_use, r.active, r.teaching_app, r.use_basis]),
    ).toEqual([
      ...Array.from({ length: 10 }, () => [null, null, 1, null, null, 'power']),
      [MAX_IDLE_S, 'EasiNote.exe', 0, 0, 1, 'activity'],
    ]);
    expect(JSON.stringify(await c.storage.rows('SELECT * FROM display'))).not.toMatch(
      /张三|teacher|row2|keylogger|busy/,
    );
    expect(await c.storage.rows('SELECT * FROM event')).toEqual([]);
    expect(await c.storage.rows('SELECT * FROM iface')).toEqual([]);
    await c.done();
  });

  it('stores a flood of distinct teaching-app names as values of one series, not as series; other names not at all', async () => {
    const n = 300;
    const names = Array.from({ length: n }, (_, i) => `app-${i}.exe`);
    const c = await setup({ teachingApps: names });
    for (let i = 0; i < n; i++) await c.send('pn-v2', 'telemetry', v2(i, { idleS: 1, foreground: names[i] }));
    // What a tool could let through as a "program": a document's name, a window title, a bidi-reversed name.
    const private_ = [
      '期末试卷 三年级二班.pptx',
      '张三 期末成绩.xlsx - Excel',
      'WeChat.exe',
      'exe.\u202Etxt',
    ];
    for (const [i, foreground] of private_.entries())
      await c.send('pn-v2', 'telemetry', v2(n + i, { idleS: 1, foreground }));
    const total = n + private_.length;
    await waitFor(() => c.collector.stats().accepted === total, {
      what: `${total} accepted`,
      timeoutMs: 20_000,
    });
    await c.storage.drain();
    const [count] = await c.storage.rows('SELECT count(foreground) AS n FROM display');
    expect(count?.n).toBe(n);
    const [readings] = await c.storage.rows('SELECT count(in_use) AS n FROM display');
    expect(readings?.n).toBe(total); // each reading judged and stored, without the name
    const series = await c.storage.query('SHOW SERIES FROM display');
    expect(series[0]?.flatMap((s) => s.values)).toHaveLength(1);
    expect(c.collector.stats().dropped).toEqual({});
    await c.done();
  });
});
