import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localDate } from '../../common/calendar.js';
import { LABELS } from '../../contracts/labels.js';
import { planCity } from '../../dev/city.js';
import { freePort } from '../../dev/ports.js';
import { launchChromium, openConsole, tableCells } from '../helpers/browser.js';
import { waitFor } from '../helpers/influx.js';

/**
 * The console on the quickstart's own city, as a newcomer meets it: `npm run stack` (six schools, class all day
 * so that the alerts page at any hour, one school's fibre cut 40 s after it is up), then the printed console
 * link in Debian's Chromium. Every page loads; the congested rural school heads the network page; the cut
 * school's uplink turns down there within a minute, and its alert appears and is acknowledged from the page; a
 * county token made with the README's command sees only its county. Screenshots go to var/test-artifacts/.
 */
const repo = fileURLToPath(new URL('../../', import.meta.url));
const ARTIFACTS = join(process.cwd(), 'var', 'test-artifacts');
const exec = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'cfm-quickstart-console-'));
const node = (entry: string, args: string[]) => [
  '--import',
  import.meta.resolve('tsx'),
  join(repo, entry),
  ...args,
];
const OUTAGE_AFTER_S = 40;
/** The cut lasts the whole test: uplink_down fires and is acknowledged while the link is still down. */
const OUTAGE_FOR_S = 3_600;
const plan = planCity({ schools: 6, classrooms: 2, today: localDate(Date.now()), classAllDay: true });
const congested = plan.schools.find((s) => s.scenario === 'congested')!;
const outage = plan.schools.find((s) => s.scenario === 'outage')!;

let child: ChildProcess;
let out = '';
let exited: Promise<number | null>;
let url: string;
let admin: string;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  child = spawn(
    process.execPath,
    node('scripts/stack.ts', [
      ...['--schools', '6', '--classrooms', '2', '--history-days', '2', '--interval-s', '5'],
      ...[
        '--outage-after-s',
        String(OUTAGE_AFTER_S),
        '--outage-for-s',
        String(OUTAGE_FOR_S),
        '--class-all-day',
      ],
      ...['--api-port', '0', '--influx-port', String(await freePort())],
    ]),
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  for (const s of [child.stdout!, child.stderr!])
    s.on('data', (c: Buffer) => {
      out += c.toString();
    });
  exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  await waitFor(() => out.includes('Ctrl-C stops everything.') || child.exitCode !== null, {
    timeoutMs: 150_000,
    what: 'the stack to come up',
  });
  expect(child.exitCode, out).toBeNull();
  const link = /console +(http:\/\/127\.0\.0\.1:\d+)\/console\/#token=(cfm_\S+)/.exec(out);
  expect(link, out).not.toBeNull();
  [, url, admin] = link as unknown as [string, string, string];
  browser = await launchChromium();
}, 240_000);

/** `/v1/schools/:id` as the admin sees it: its live uplink and link (the last probe cycle). */
async function school(id: string): Promise<{
  uplink: { state: string } | null;
  link: { method: string; sent: number; received: number; rttMs: number | null } | null;
}> {
  const r = await fetch(`${url}/v1/schools/${id}`, { headers: { authorization: `Bearer ${admin}` } });
  expect(r.status).toBe(200);
  return (await r.json()) as Awaited<ReturnType<typeof school>>;
}

afterAll(async () => {
  await browser?.close();
  if (child && child.exitCode === null) {
    child.kill('SIGINT');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

const rowsOf = (page: Page) => tableCells(page, '#uplinks');

describe('the console on the quickstart city (headless Chromium)', () => {
  it('the network page, before the cut: every school measured, the congested rural school first', async () => {
    expect(out).not.toContain('simulated fibre cut'); // the cut is still to come
    const { page, problems } = await openConsole(browser, url, admin, 'network');
    await page.waitForSelector('#uplinks');
    await waitFor(
      async () => {
        const rows = await rowsOf(page);
        return rows.length === 6 && rows.every((r) => r[1] !== '未监测') && rows[0]![1] === '拥塞';
      },
      { timeoutMs: 60_000, what: 'every uplink measured, one congested' },
    );
    const rows = await rowsOf(page);
    expect(rows[0]![0]).toBe(congested.name);
    expect(rows[0]![0]).toMatch(/^淳安县/);
    await page.screenshot({ path: join(ARTIFACTS, 'quickstart-network.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  }, 90_000);

  it('every page loads with the city in it', async () => {
    const { page, problems } = await openConsole(browser, url, admin, 'overview');
    await waitFor(async () => (await tableCells(page, '#attainment')).length > 0, {
      timeoutMs: 20_000,
      what: 'the attainment table',
    });
    expect((await tableCells(page, '#attainment'))[0]![0]).toMatch(/浙江省|杭州市/);
    await page.goto(`${url}/console/#/devices`);
    await page.fill('.search', outage.name);
    await page.click(`.matches button:has-text("${outage.name}")`);
    await page.waitForSelector('#devices');
    await page.goto(`${url}/console/#/idle`);
    await page.waitForSelector('#idle');
    await page.goto(`${url}/console/#/alerts`);
    await page.waitForSelector('#page-alerts');
    expect(problems).toEqual([]);
    await page.close();
  }, 60_000);

  it('the cut school: its uplink down within a minute, its alert on the page and acknowledged there', async () => {
    const { page, problems } = await openConsole(browser, url, admin, 'network');
    await page.waitForSelector('#uplinks');
    await waitFor(() => out.includes(`simulated fibre cut at ${outage.name}`), {
      timeoutMs: (OUTAGE_AFTER_S + 60) * 1000,
      what: 'the fibre cut',
    });
    const cutAt = Date.now();
    await waitFor(async () => (await rowsOf(page))[0]?.slice(0, 2).join() === `${outage.name},中断`, {
      timeoutMs: 60_000,
      what: `${outage.name} shown down at the top of the network page`,
    });
    expect(Date.now() - cutAt).toBeLessThan(60_000);
    // A down link has no rate now: its last reading's is on hover only.
    expect((await rowsOf(page))[0]![3]).toBe('—');
    await page.screenshot({ path: join(ARTIFACTS, 'quickstart-network-cut.png'), fullPage: true });

    // uplink_down pages after 60 s of class time down (alerts.rules.uplink_down.forS).
    await page.goto(`${url}/console/#/alerts`);
    await page.waitForSelector('#page-alerts');
    const title = LABELS.alertRule.uplink_down;
    const row = page.locator('table.alerts tbody tr', { hasText: outage.name }).filter({ hasText: title });
    // Pending first (its 60 s), then firing: only a firing alert is acknowledged.
    const ack = row.locator('button', { hasText: '确认' });
    await waitFor(async () => (await row.count()) === 1 && (await ack.count()) === 1, {
      timeoutMs: 150_000,
      what: `the ${title} alert of ${outage.name} firing on the alerts page`,
    });
    expect(await row.textContent()).toMatch(/SNMP|不应答|中断|断开/);
    await ack.click();
    await waitFor(async () => /已确认/.test((await row.textContent()) ?? ''), {
      timeoutMs: 15_000,
      what: 'the alert shown acknowledged',
    });
    const res = await fetch(`${url}/v1/alerts`, { headers: { authorization: `Bearer ${admin}` } });
    const { items } = (await res.json()) as { items: { rule: string; school: string; ackedBy?: string }[] };
    expect(items.find((a) => a.rule === 'uplink_down' && a.school === outage.id)?.ackedBy).toBeTruthy();
    await page.screenshot({ path: join(ARTIFACTS, 'quickstart-alerts.png'), fullPage: true });
    // Down, not management_down: SNMP and the probes both fail — the router's management port refuses the
    // poller's TCP probes (its registry row says probeMethod tcp), while the other schools' answer.
    const cut = await school(outage.id);
    expect(cut.uplink?.state).toBe('down');
    expect(cut.link).toMatchObject({ method: 'tcp', received: 0, rttMs: null });
    expect(cut.link!.sent).toBeGreaterThan(0);
    expect((await school(congested.id)).link).toMatchObject({ method: 'tcp', received: expect.any(Number) });
    expect((await school(congested.id)).link!.received).toBeGreaterThan(0);
    expect(items.some((a) => a.rule === 'management_down' && a.school === outage.id)).toBe(false);

    expect(problems).toEqual([]);
    await page.close();
  }, 300_000);

  it("a county token made with the README's command sees only its county", async () => {
    const { stdout } = await exec(
      process.execPath,
      node('api/main.ts', [
        'tokens',
        'add',
        '淳安县教育局',
        '--role',
        'ops',
        '--scope',
        '330000/330100/330127',
      ]),
      { cwd: dir },
    );
    const county = stdout.trim();
    const own = plan.schools.filter((s) => s.county.id === '330127').map((s) => s.name);
    expect(own.length).toBeGreaterThan(0);
    // The API accepts a token within 2 s of `tokens add`.
    await waitFor(
      async () =>
        (await fetch(`${url}/v1/schools`, { headers: { authorization: `Bearer ${county}` } })).status === 200,
      { timeoutMs: 10_000, what: 'the county token accepted' },
    );
    const { page, problems } = await openConsole(browser, url, county, 'network');
    await waitFor(async () => (await rowsOf(page)).length === own.length, {
      timeoutMs: 20_000,
      what: "the county's uplinks",
    });
    expect((await rowsOf(page)).map((r) => r[0]).sort()).toEqual([...own].sort());
    await page.goto(`${url}/console/#/overview`);
    await waitFor(async () => (await tableCells(page, '#attainment')).length > 0, { timeoutMs: 20_000 });
    expect((await tableCells(page, '#attainment')).map((r) => r[0]!.replace('（合计）', ''))).toEqual([
      '淳安县',
    ]);
    expect(problems).toEqual([]);
    await page.close();
  }, 60_000);
});
