import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { AlertService, alertsConfigSchema } from '../../alerting/service.js';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState, liveLimitsSchema } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { mqttConfigSchema } from '../../common/mqtt.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import { EXAMPLES } from '../../contracts/examples.js';
import { connectPresence } from '../../dev/presence.js';
import { testApp } from '../helpers/api.js';
import { launchChromium, openConsole, tableCells } from '../helpers/browser.js';
import { ALL_DAY, CITY, CITY_CALENDAR, cityRollup, writeCity } from '../helpers/city.js';
import { Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { statusOf, uplinkOf } from '../helpers/messages.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * The console (console/, served at /console/) in Debian's Chromium, headless, driven by playwright-core, against
 * the API on loopback over the fixture city in a real influxd, with live uplinks from a real Mosquitto.
 * Screenshots go to var/test-artifacts/ (not committed).
 */
const WEEK = '2026-10-05..2026-10-11';
const ARTIFACTS = join(process.cwd(), 'var', 'test-artifacts');
const influxd = new Influxd();
const mosquitto = new Mosquitto();
let dir: string;
let storage: Storage;
let live: LiveState;
let app: Awaited<ReturnType<typeof testApp>>;
let url: string;
let admin: string;
let county: string;
let browser: Browser;
let alerts: AlertService;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-console-'));
  mkdirSync(ARTIFACTS, { recursive: true });
  const registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  const tokens = new TokenStore(join(dir, 'tokens.json')).load();
  admin = tokens.add('装备中心', 'admin').token;
  county = tokens.add('滨江区电教馆', 'ops', '330000/330100/330108').token;
  const calendars = new Calendars([CITY_CALENDAR]);
  await Promise.all([influxd.start(), mosquitto.start()]);
  storage = testStorage(influxd.url, { database: 'console' }).storage;
  await storage.start();
  await writeCity(storage);
  await cityRollup(storage, () => registry.index, calendars).range('2026-10-05', '2026-10-11');
  live = new LiveState(
    mqttConfigSchema.parse({ url: mosquitto.url, clientId: 'api-console' }),
    silentLogger(),
    false,
    // Stale after 10 min (a device whose status promises a heartbeat: 3 of its intervals), so that the network
    // test can show that the page follows the server's word, not the reading's age.
    { registry: () => registry.index, limits: liveLimitsSchema.parse({ staleAfterS: 600 }) },
  );
  // Alerting as the API process runs it, with class all day so a dead panel pages at once.
  alerts = new AlertService(
    alertsConfigSchema.parse({
      stateFile: join(dir, 'alerts.json'),
      groupWaitS: 0,
      rules: { device_offline: { forS: 1, resolveAfterS: 1, renotifyS: 0 } },
    }),
    { log: silentLogger(), registry, calendars: () => new Calendars([ALL_DAY]), live },
  );
  alerts.start();
  await live.start();
  app = await testApp({ registry, calendars, tokens, storage, live, alerts });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await app?.close();
  await alerts?.stop();
  await live?.stop();
  await storage?.stop();
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

/** A page logged in with a token, collecting script errors and CSP violations. */
const open = (token: string, route = 'overview') => openConsole(browser, url, token, route);
const cells = tableCells;

describe('the console (headless Chromium)', () => {
  it('is served with a strict CSP, and the token leaves the address bar', async () => {
    const res = await fetch(`${url}/console/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toMatch(/script-src 'self';/);
    expect(res.headers.get('content-security-policy')).not.toMatch(/unsafe/);
    expect((await fetch(`${url}/`, { redirect: 'manual' })).headers.get('location')).toBe('/console/');
    const { page, problems } = await open(admin);
    expect(page.url()).not.toContain(admin);
    expect(problems).toEqual([]);
    // The capture is live: an inline style the CSP refuses is reported (so an empty list above means none).
    await page.evaluate(
      "document.head.append(Object.assign(document.createElement('style'), { textContent: 'body { color: red }' }))",
    );
    await waitFor(() => problems.some((p) => p.startsWith('CSP violation: style-src')), { timeoutMs: 5_000 });
    await page.close();
  });

  it('总览: attainment by region, drill-down to a county, a school and its classrooms, with names and coverage', async () => {
    const { page, problems } = await open(admin);
    await page.fill('#period', WEEK);
    await page.press('#period', 'Enter');
    await page.waitForSelector('.coverage');
    const shows = (name: string) =>
      waitFor(async () => (await cells(page, '#attainment')).some((r) => r[0] === name), {
        timeoutMs: 10_000,
      });
    await shows('浙江省');
    await page.click('#attainment button:has-text("浙江省")');
    await shows('杭州市');
    await page.click('#attainment button:has-text("杭州市")');
    await waitFor(async () => (await cells(page, '#attainment')).some((r) => r[0] === '西湖区'), {
      timeoutMs: 10_000,
    });
    expect((await cells(page, '#attainment')).map((r) => r[0])).toEqual([
      '杭州市（合计）',
      '西湖区',
      '滨江区',
    ]);
    expect(await page.textContent('.coverage')).toMatch(/依据 \d+ 个教学日中的 \d+ 个评估/);
    await page.click('#attainment button:has-text("西湖区")');
    await page.waitForSelector('#schools');
    const schools = await cells(page, '#schools');
    expect(schools.map((r) => r[0]).sort()).toEqual(
      CITY.schools
        .filter((s) => s.region === '330106')
        .map((s) => s.name)
        .sort(),
    );
    await page.click(`#schools button:has-text("${CITY.schools[0]!.name}")`);
    await page.waitForSelector('#classrooms');
    expect((await cells(page, '#classrooms')).map((r) => r[0])).toContain('一(1)班');
    // Reasons: the Chinese label, its code and the figures behind it on hover.
    const reasons = await page.$$eval('#classrooms tbody tr', (trs) =>
      trs.map((tr) => [
        tr.querySelector('td')?.textContent,
        [...tr.querySelectorAll('.reasons span')].map((s) => [s.textContent, s.getAttribute('title')]),
      ]),
    );
    expect(reasons).toEqual([
      ['一(1)班', []],
      ['一(2)班', [['使用节次不足', expect.stringMatching(/^used_too_little：used in \d/)]]],
    ]);
    await page.screenshot({ path: join(ARTIFACTS, 'console-overview.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('网络: a down uplink first, the congested school next (utilisation of its capacity), then the rest; the export button downloads them', async () => {
    const pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'console-pub' });
    // A: 100 Mbit/s contracted, 20 Mbit/s used; B: its interface down; C: 95 Mbit/s on a 100 Mbit/s port.
    await pub.publishAsync('cfm/v1/A/gw-a/iface', JSON.stringify(uplinkOf(20e6, { speedMbps: 1000 })));
    await pub.publishAsync('cfm/v1/B/gw-b/iface', JSON.stringify(uplinkOf(0, { operStatus: 'down' })));
    await pub.publishAsync('cfm/v1/C/gw-c/iface', JSON.stringify(uplinkOf(95e6, { speedMbps: 100 })));
    // Their links' last probe cycles: A's now; B's twenty minutes ago (its probes stopped: stale here after 10
    // minutes); C not probed.
    const cycle = (ts: number, received: number) =>
      JSON.stringify({
        ...EXAMPLES.probe,
        ts,
        sent: 20,
        received,
        rttMs: { min: 30, avg: 42.5, max: 80 },
        jitterMs: 6,
      });
    await pub.publishAsync('cfm/v1/A/gw-a/probe', cycle(Date.now(), 20));
    await pub.publishAsync('cfm/v1/B/gw-b/probe', cycle(Date.now() - 20 * 60_000, 19));
    await pub.endAsync();
    await waitFor(
      () =>
        live.uplinks.size === 3 &&
        live.link('A', 'gw-a') !== undefined &&
        live.link('B', 'gw-b') !== undefined,
      { timeoutMs: 10_000 },
    );
    const { page, problems } = await open(admin, 'network');
    await page.waitForSelector('#uplinks');
    await waitFor(async () => (await cells(page, '#uplinks')).every((r) => r[1] !== '未监测'), {
      timeoutMs: 10_000,
    });
    const rows = await cells(page, '#uplinks');
    const name = (id: string) => CITY.schools.find((s) => s.id === id)!.name;
    expect(rows.map((r) => [r[0], r[1]])).toEqual([
      [name('B'), '中断'],
      [name('C'), '拥塞'],
      [name('A'), '正常'],
    ]);
    expect(rows[1]![2]).toBe('95 %');
    // 丢包 · 时延 · 抖动: A's cycle is now; B's is greyed with how long ago it ran; C has none.
    expect(rows.map((r) => r[6])).toEqual(['5.0 % · 43 ms · 6 ms（20 分钟前）', '—', '0.0 % · 43 ms · 6 ms']);
    const quality = (school: string) =>
      page.$eval(`tr[data-school="${school}"] td.link-quality`, (td) => ({
        stale: td.classList.contains('stale'),
        // In the page (the tests' types have no DOM lib).
        color: (
          globalThis as unknown as { getComputedStyle(e: unknown): { color: string } }
        ).getComputedStyle(td).color,
        title: td.getAttribute('title'),
      }));
    const [a, b] = [await quality('A'), await quality('B')];
    expect(b).toMatchObject({
      stale: true,
      title: expect.stringMatching(/20 分钟前）：已无新的探测结果，不是当前值$/),
    });
    expect(a).toMatchObject({ stale: false, title: expect.stringMatching(/^探测时间 .*（\d+ 秒前）$/) });
    expect(b.color).not.toBe(a.color);
    // Its export: the same uplinks as a file from the API, in the same order, in Chinese with the codes beside.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('#page-network button:has-text("导出 CSV")'),
    ]);
    expect(download.suggestedFilename()).toMatch(/^uplinks_\d{4}-\d\d-\d\d_\d{4}\.csv$/);
    const csv = readFileSync((await download.path())!, 'utf8')
      .replace(/^\uFEFF/, '')
      .split('\r\n');
    expect(csv[0]).toMatch(/^学校标识码,学校名称,区域代码,区域,出口状态,出口状态代码,利用率%,/);
    expect(csv.slice(1, 4).map((l) => l.split(',').slice(0, 2).concat(l.split(',').slice(4, 7)))).toEqual([
      ['B', name('B'), '中断', 'down', expect.any(String)],
      ['C', name('C'), '正常', 'up', '95'],
      ['A', name('A'), '正常', 'up', '20'],
    ]);
    await page.screenshot({ path: join(ARTIFACTS, 'console-network.png'), fullPage: true });
    // B probed again: the page, open, loads the schools again (every 30 s; the page's clock is fast-forwarded,
    // the page entered afresh under it) and B's cycle is now.
    await page.clock.install();
    await page.goto(`${url}/console/#/overview`);
    await page.goto(`${url}/console/#/network`);
    await waitFor(async () => (await cells(page, '#uplinks')).length === 3, { timeoutMs: 10_000 });
    const again = await mqtt.connectAsync(mosquitto.url, { clientId: 'console-pub' });
    const now = Date.now();
    await again.publishAsync('cfm/v1/B/gw-b/probe', cycle(now, 18));
    await again.endAsync();
    await waitFor(() => live.link('B', 'gw-b')?.tsMs === now, { timeoutMs: 10_000 });
    expect(await quality('B')).toMatchObject({ stale: true });
    await page.clock.fastForward(31_000);
    // One reload; on a loaded machine the page's request and render can take a while.
    await waitFor(async () => (await quality('B')).stale === false, { timeoutMs: 30_000 });
    expect((await cells(page, '#uplinks')).find((r) => r[0] === name('B'))?.[6]).toBe(
      '10.0 % · 43 ms · 6 ms',
    );
    expect(problems).toEqual([]);
    await page.close();
  });

  it('a county token sees only its county, everywhere', async () => {
    const { page, problems } = await open(county);
    await page.fill('#period', WEEK);
    await page.press('#period', 'Enter');
    await waitFor(async () => (await cells(page, '#attainment')).length > 0, { timeoutMs: 10_000 });
    expect((await cells(page, '#attainment')).map((r) => r[0]!.replace('（合计）', ''))).toEqual(['滨江区']);
    await page.goto(`${url}/console/#/network`);
    await waitFor(async () => (await cells(page, '#uplinks')).length > 0, { timeoutMs: 10_000 });
    const own = CITY.schools.filter((s) => s.region === '330108').map((s) => s.name);
    expect((await cells(page, '#uplinks')).map((r) => r[0])).toEqual(own);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('设备, 闲置设备 and 告警 load; a device has its week; errors are shown in Chinese', async () => {
    const { page, problems } = await open(admin, 'devices');
    await page.fill('.search', CITY.schools[0]!.name);
    await page.click(`.matches button:has-text("${CITY.schools[0]!.name}")`);
    await page.waitForSelector('#devices');
    await page.click('#devices button:has-text("pn-a2")');
    await page.waitForSelector('svg.week');
    await page.goto(`${url}/console/#/idle`);
    await page.waitForSelector('#idle');
    await page.goto(`${url}/console/#/alerts`);
    await page.waitForSelector('#page-alerts');
    expect(problems).toEqual([]);
    await page.close();
  });

  it("设备: a classroom found by part of its name, with its school; choosing it opens its device's week", async () => {
    const { page, problems } = await open(admin, 'devices');
    await page.fill('.search', '一（2）');
    await page.waitForSelector('.rooms button');
    expect(await page.$$eval('.rooms button', (bs) => bs.map((b) => b.textContent))).toEqual([
      '西湖区第一小学 · 一(2)班',
    ]);
    // A school's name and part of a room's narrow it down: both rooms of that school, no other's.
    await page.fill('.search', '第一小学 一(');
    await waitFor(async () => (await page.$$('.rooms button')).length === 2, { timeoutMs: 10_000 });
    expect(await page.$$eval('.rooms button', (bs) => bs.map((b) => b.textContent))).toEqual([
      '西湖区第一小学 · 一(1)班',
      '西湖区第一小学 · 一(2)班',
    ]);
    await page.click('.rooms button:has-text("一(2)班")');
    await page.waitForSelector('svg.week');
    expect(await page.textContent('#page-devices section:last-of-type h2')).toBe('pn-a2 · 近 7 天');
    expect(await page.textContent('#page-devices section:last-of-type p')).toContain(
      '西湖区第一小学 一(2)班',
    );
    // The school's devices, the room's highlighted, with room names.
    await page.waitForSelector('#devices tr.chosen-room');
    expect(
      await page.$$eval('#devices tr.chosen-room', (trs) =>
        trs.map((tr) => tr.querySelector('td')?.textContent),
      ),
    ).toEqual(['一(2)班']);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('the schools are asked once per session: switching pages does not ask again; another login does', async () => {
    const { page, problems } = await open(admin);
    const asked: string[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/v1/schools') asked.push(r.url());
    });
    const visit = async (name: string, ready: string) => {
      await page.click(`header.top nav a:text-is("${name}")`);
      await page.waitForSelector(ready);
    };
    await visit('网络', '#uplinks');
    await visit('告警', '#page-alerts table.alerts, #page-alerts section p');
    await visit('设备', '.search');
    await page.fill('.search', CITY.schools[0]!.name);
    await page.waitForSelector('.matches button');
    await visit('闲置设备', '#idle');
    await visit('网络', '#uplinks');
    expect(asked).toHaveLength(1);
    // Another token: the kept list is forgotten, and the new token gets its own.
    await page.click('header.top button.logout');
    await page.fill('form.login input', county);
    await page.press('form.login input', 'Enter');
    await visit('网络', '#uplinks');
    await waitFor(async () => (await cells(page, '#uplinks')).length === 1, { timeoutMs: 10_000 });
    expect((await cells(page, '#uplinks')).map((r) => r[0])).toEqual(['滨江区实验初中']);
    expect(asked).toHaveLength(2);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('告警: a panel that dies appears with its full text, and is acknowledged from the page', async () => {
    const panel = await connectPresence(mosquitto.url, { school: 'A', device: 'pn-a2', keepaliveS: 2 });
    panel.stream.destroy(); // killed: the broker publishes its will
    await waitFor(() => [...alerts.engine.active.values()].some((a) => a.state === 'firing'), {
      timeoutMs: 15_000,
    });
    const { page, problems } = await open(admin, 'alerts');
    await page.waitForSelector('table.alerts tbody tr');
    const row = (await cells(page, 'table.alerts')).find((r) => r[3] === 'pn-a2')!;
    expect(row.slice(1, 4)).toEqual(['教室设备离线', CITY.schools.find((s) => s.id === 'A')!.name, 'pn-a2']);
    expect(row[4]).toMatch(/连接意外断开/);
    await page.click('table.alerts button:has-text("确认")');
    await waitFor(
      async () =>
        (await cells(page, 'table.alerts')).some(
          (r) => r[3] === 'pn-a2' && r[6]!.includes('装备中心 已确认'),
        ),
      {
        timeoutMs: 10_000,
      },
    );
    const acked = [...alerts.engine.active.values()].find(
      (a) => a.device === 'pn-a2' && a.rule === 'device_offline',
    );
    expect(acked?.ackedBy).toBe('装备中心');
    await page.screenshot({ path: join(ARTIFACTS, 'console-alerts.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });

  // Last: it leaves A's router promising a 1 s heartbeat (its readings stale after 3 s) and C's uplink down.
  it("网络: down and stale are the server's word, and a change on the live stream re-sorts the row", async () => {
    const name = (id: string) => CITY.schools.find((s) => s.id === id)!.name;
    const pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'console-pub-state' });
    // B down, C at 95 % (as in the test above); A's reading is 5 minutes old: within the server's 10 minutes, so
    // up (a page judging by the reading's age would say otherwise).
    await pub.publishAsync('cfm/v1/B/gw-b/iface', JSON.stringify(uplinkOf(0, { operStatus: 'down' })));
    await pub.publishAsync('cfm/v1/C/gw-c/iface', JSON.stringify(uplinkOf(95e6, { speedMbps: 100 })));
    await pub.publishAsync(
      'cfm/v1/A/gw-a/iface',
      JSON.stringify({ ...uplinkOf(20e6, { speedMbps: 1000 }), ts: Date.now() - 5 * 60_000 }),
    );
    await waitFor(() => (live.uplink('A', 'gw-a')?.tsMs ?? Number.POSITIVE_INFINITY) < Date.now() - 60_000, {
      timeoutMs: 10_000,
    });
    expect(live.uplink('A', 'gw-a')?.state).toBe('up');
    const { page, problems } = await open(admin, 'network');
    const order = async () => (await cells(page, '#uplinks')).map((r) => [r[0], r[1]]);
    const becomes = (rows: string[][]) =>
      waitFor(async () => JSON.stringify(await order()) === JSON.stringify(rows), {
        timeoutMs: 15_000,
      }).catch(async () => expect(await order()).toEqual(rows));
    await becomes([
      [name('B'), '中断'],
      [name('C'), '拥塞'],
      [name('A'), '正常'],
    ]);
    // A's router now promises a heartbeat of 1 s: with a fresh reading, the server calls it stale 3 s later and
    // says so on the stream; the row moves up, after the down one, though its reading is seconds old.
    await pub.publishAsync(
      'cfm/v1/A/gw-a/status',
      JSON.stringify(
        statusOf('online', {
          kind: 'router',
          classroom: undefined,
          region: '330000/330100/330106',
          heartbeatS: 1,
        }),
      ),
    );
    await pub.publishAsync('cfm/v1/A/gw-a/iface', JSON.stringify(uplinkOf(20e6, { speedMbps: 1000 })));
    await becomes([
      [name('B'), '中断'],
      [name('A'), '无数据'],
      [name('C'), '拥塞'],
    ]);
    // C's interface goes down: it joins B at the top (down ones by name), above the stale one.
    await pub.publishAsync('cfm/v1/C/gw-c/iface', JSON.stringify(uplinkOf(0, { operStatus: 'down' })));
    await becomes([
      ...[name('B'), name('C')].sort((a, b) => a.localeCompare(b, 'zh')).map((n) => [n, '中断']),
      [name('A'), '无数据'],
    ]);
    await pub.endAsync();
    expect(problems).toEqual([]);
    await page.close();
  });
});
