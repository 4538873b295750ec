import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TokenStore } from '../../api/tokens.js';
import { Calendars } from '../../common/calendar.js';
import { LiveState } from '../../common/live.js';
import { silentLogger } from '../../common/log.js';
import { mqttConfigSchema } from '../../common/mqtt.js';
import { RegistryStore } from '../../common/registry/store.js';
import type { Storage } from '../../common/storage/storage.js';
import { testApp } from '../helpers/api.js';
import { launchChromium, openPage } from '../helpers/browser.js';
import { CITY, CITY_CALENDAR, cityRollup, writeCity } from '../helpers/city.js';
import { Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { statusOf, uplinkOf } from '../helpers/messages.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * The built-in overview page in a real browser: Debian's Chromium, headless, driven by playwright-core (no
 * browser download), against the API on loopback over the fixture city in a real influxd, with live state from
 * a real Mosquitto.
 */
const WEEK = '2026-10-05..2026-10-11';
const influxd = new Influxd();
const mosquitto = new Mosquitto();
let dir: string;
let storage: Storage;
let live: LiveState;
let app: Awaited<ReturnType<typeof testApp>>;
let url: string;
let token: string;
let browser: Browser;
let auditor: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-overview-'));
  const registry = new RegistryStore(join(dir, 'registry.json')).load();
  await registry.import([{ name: 'city.yaml', data: Buffer.from(stringify(CITY)) }]);
  const tokens = new TokenStore(join(dir, 'tokens.json')).load();
  token = tokens.add('装备中心', 'admin').token;
  auditor = tokens.add('西湖区审计', 'auditor').token;
  const calendars = new Calendars([CITY_CALENDAR]);
  await Promise.all([influxd.start(), mosquitto.start()]);
  storage = testStorage(influxd.url, { database: 'overview' }).storage;
  await storage.start();
  await writeCity(storage);
  await cityRollup(storage, () => registry.index, calendars).range('2026-10-05', '2026-10-11');
  live = new LiveState(
    mqttConfigSchema.parse({ url: mosquitto.url, clientId: 'api-overview' }),
    silentLogger(),
  );
  await live.start();
  app = await testApp({ registry, calendars, tokens, storage, live });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await app?.close();
  await live?.stop();
  await storage?.stop();
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('the overview page (headless Chromium)', () => {
  it('shows attainment by county, offline devices and the live uplink chart with down and stale uplinks as such; the token leaves the address bar', async () => {
    // Live state: a panel whose connection died (its will), and uplink readings from a school's router.
    const pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'overview-pub' });
    await pub.publishAsync('cfm/v1/A/pn-a2/status', JSON.stringify(statusOf('offline')), {
      qos: 1,
      retain: true,
    });
    await waitFor(() => live.device('A', 'pn-a2')?.state === 'offline', { timeoutMs: 10_000 });

    const { page, problems } = await openPage(browser, { viewport: { width: 1280, height: 800 } });
    await page.goto(`${url}/overview?period=${WEEK}#token=${token}`);

    // The table shows exactly what the API computes for the period.
    const api = (await (
      await fetch(`${url}/v1/attainment?period=${WEEK}`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as {
      rollups: {
        region: string;
        regionName: string;
        regionLevel: string;
        split: string;
        schools: number;
        xxtPct: number | null;
        bbtPct: number | null;
      }[];
    };
    const expected = api.rollups.filter((r) => r.split === 'all' && r.regionLevel !== 'province');
    expect(expected.map((r) => r.regionName)).toEqual(['杭州市', '西湖区', '滨江区']);
    await page.waitForSelector('#attainment tbody tr[data-region]');
    const rows = await page.$$eval('#attainment tbody tr[data-region]', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim() ?? '')),
    );
    const pct = (v: number | null) => (v === null ? '–' : `${v.toFixed(1)} %`);
    expect(rows.map((r) => [r[0]!.replace(/^　/, ''), r[1], r[2], r[3]])).toEqual(
      expected.map((r) => [r.regionName, String(r.schools), pct(r.xxtPct), pct(r.bbtPct)]),
    );
    expect(await page.textContent('#period')).toBe('统计期 2026-10-05 … 2026-10-11');

    // Offline now: the panel, under its school's name.
    await page.waitForSelector('#offline tbody tr td:nth-child(2)');
    expect(await page.$$eval('#offline tbody tr', (trs) => trs.map((tr) => tr.textContent))).toEqual([
      // Its kind by the label of contracts/labels.ts, which the API fills into the page.
      expect.stringMatching(/^西湖区第一小学pn-a2交互式一体机/),
    ]);

    // The live chart draws each reading as it streams in.
    const reading = (inBps: number) => JSON.stringify(uplinkOf(inBps, { speedMbps: 100 }));
    await pub.publishAsync('cfm/v1/A/gw-a/iface', reading(42e6), { qos: 1 });
    await page.waitForSelector('#chart svg circle', { state: 'attached' });
    await pub.publishAsync('cfm/v1/A/gw-a/iface', reading(55e6), { qos: 1 });
    await page.waitForSelector('#chart svg polyline', { state: 'attached' });
    expect(await page.textContent('#legend')).toContain('西湖区第一小学 55.0');

    // Down and stale uplinks (the API's `state`) are shown as such, before the busy ones, with the labels of
    // contracts/labels.ts; their last rate is not drawn as if it were now. C's interface goes down; B's reading
    // is 10 minutes old, past the API's staleAfterS (180 s): stale as it arrives.
    await pub.publishAsync('cfm/v1/C/gw-c/iface', JSON.stringify(uplinkOf(0, { operStatus: 'down' })), {
      qos: 1,
    });
    await pub.publishAsync(
      'cfm/v1/B/gw-b/iface',
      JSON.stringify({ ...uplinkOf(9e6, { speedMbps: 10 }), ts: Date.now() - 10 * 60_000 }),
      { qos: 1 },
    );
    await page.waitForSelector('#legend span[data-state="down"]', { state: 'attached' });
    await page.waitForSelector('#legend span[data-state="stale"]', { state: 'attached' });
    expect(await page.$$eval('#legend span', (ss) => ss.map((s) => [s.textContent, s.className]))).toEqual([
      ['滨江区实验初中 中断', 'bad'],
      ['转塘教学点 无数据', 'bad'],
      ['西湖区第一小学 55.0', ''],
    ]);
    expect(await page.textContent('#uplink-problems')).toBe(' · 中断 1 · 无数据 1');
    expect(await page.$$eval('#chart svg polyline, #chart svg circle', (es) => es.length)).toBe(1);
    await pub.endAsync();

    // The token is kept in the tab, not in the address bar or history.
    expect(page.url()).toBe(`${url}/overview?period=${WEEK}`);
    const shot = await page.screenshot({ fullPage: true });
    // CFM_SCREENSHOT_DIR=… keeps it, to look at.
    if (process.env.CFM_SCREENSHOT_DIR)
      writeFileSync(join(process.env.CFM_SCREENSHOT_DIR, 'overview.png'), shot);
    expect(shot.subarray(1, 4).toString()).toBe('PNG');
    expect(shot.readUInt32BE(16)).toBe(1280); // IHDR width
    expect(shot.length).toBeGreaterThan(20_000); // a rendered page, not a blank one (~5 KB)
    expect(problems).toEqual([]);
    await page.close();
  }, 60_000);

  it('asks for a token when it has none, and again when the API refuses it', async () => {
    const page = await browser.newPage();
    await page.goto(`${url}/overview`);
    await page.waitForSelector('#login:not([hidden])');
    expect(await page.isHidden('#main')).toBe(true);
    await page.fill('#token', 'cfm_not-a-real-token');
    await page.press('#token', 'Enter');
    await page.locator('#error', { hasText: 'token refused' }).waitFor();
    expect(await page.isVisible('#login')).toBe(true);
    await page.close();
  }, 60_000);

  it("tells an auditor in Chinese that the live view is the operators', once, and shows the rest", async () => {
    // The browser's own line for the refused stream is expected; the page's text is what the test reads.
    const { page, problems } = await openPage(browser, {
      viewport: { width: 1280, height: 800 },
      ignore: /status of 403/,
    });
    await page.goto(`${url}/overview?period=${WEEK}#token=${auditor}`);
    await page.locator('#error', { hasText: '此令牌的角色不能查看实时带宽' }).waitFor();
    expect(await page.textContent('#error')).not.toMatch(/HTTP 403/);
    expect(await page.isVisible('#main')).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  }, 60_000);

  it('is served with a content security policy that allows only its own script and the API', async () => {
    const res = await fetch(`${url}/overview`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toMatch(
      /^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/]{43}='; .*connect-src 'self'/,
    );
    expect((await fetch(`${url}/`, { redirect: 'manual' })).headers.get('location')).toBe('/console/');
  });
});
