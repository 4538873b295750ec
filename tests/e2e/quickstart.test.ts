import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { dayNumber, localDate } from '../../common/calendar.js';
import { freePort } from '../../dev/ports.js';
import { waitFor } from '../helpers/influx.js';

/**
 * The README's first command, minus the install step: `npm run stack` over a small simulated city. It must come
 * up, print a summary computed from what it stored, serve the API and the overview page, and stop cleanly on
 * Ctrl-C (SIGINT), taking its influxd with it. Then the README's commands, typed as they are (no --config, no
 * variables), act on the running quickstart: `npm run api -- tokens add` makes a token it accepts, `npm run api
 * -- import` adds a school to its registry. Both survive a restart of the quickstart.
 *
 * Each program runs in a temporary folder as `npm run` runs it in the repository: its `var/` is the state
 * directory of them all.
 */
const repo = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cfm-quickstart-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const exec = promisify(execFile);
/** `node --import tsx <repo>/<entry>` from another folder: tsx resolved from here. */
const node = (entry: string, args: string[]) => [
  '--import',
  import.meta.resolve('tsx'),
  join(repo, entry),
  ...args,
];

/** `npm run api -- …` in the quickstart's folder, nothing else on the line. */
async function api(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await exec(process.execPath, node('api/main.ts', args), { cwd: dir })) };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

interface Stack {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

/** `npm run stack` over a six-school city in the temporary folder; resolves once it says it is up. */
async function startStack(influxPort: number): Promise<Stack> {
  const child = spawn(
    process.execPath,
    node('scripts/stack.ts', [
      ...['--schools', '6', '--classrooms', '2', '--history-days', '2', '--outage-after-s', '0'],
      ...['--api-port', '0', '--influx-port', String(influxPort)],
    ]),
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await waitFor(() => out.includes('Ctrl-C stops everything.') || child.exitCode !== null, {
      timeoutMs: 150_000,
      what: 'the stack to come up',
    });
  } catch (e) {
    child.kill('SIGINT');
    throw e;
  }
  expect(child.exitCode, out).toBeNull();
  return { child, out: () => out, exited };
}

async function stop(stack: Stack): Promise<void> {
  stack.child.kill('SIGINT');
  expect(await stack.exited, stack.out()).toBe(0);
  expect(stack.out()).toContain('stopping…');
}

/** Distinct (school, device) series of the `probe` measurement in the quickstart's InfluxDB. */
async function probesStored(influxPort: number): Promise<number> {
  const q = new URLSearchParams({
    db: 'cfm',
    q: 'SELECT count(received) FROM probe GROUP BY school, device',
  });
  const r = await fetch(`http://127.0.0.1:${influxPort}/query?${q}`);
  if (r.status !== 200) return -r.status;
  const body = (await r.json()) as { results: { series?: unknown[] }[] };
  return body.results[0]?.series?.length ?? 0;
}

const get = (url: string, token: string) => fetch(url, { headers: { authorization: `Bearer ${token}` } });
const schoolsSeen = async (url: string, token: string) => {
  const r = await get(`${url}/v1/schools`, token);
  return r.status === 200 ? ((await r.json()) as { total: number }).total : -r.status;
};

/** What `npm run stack -- --print-config` prints, as far as the test reads it. */
type Section = Record<string, unknown>;
interface PrintedStack {
  log: Section;
  influx: Section;
  broker: { listeners: { port: number }[]; credentialsFile: string };
  collector: { mqtt: Section; registryFile: string };
  poller: {
    mqtt: Section;
    targets: unknown[];
    registryFile: string;
    credentialsFile: string;
    registryTargets: Section;
    probes: Section;
  };
  agent: Section & { mqtt: { url: string } };
  api: Section;
  alerts: Section & { channels: unknown[] };
  rollup: Section;
}

describe('quickstart (npm run stack)', () => {
  it('--print-config prints the configuration it runs with: every service, secrets redacted; it writes nothing', async () => {
    const data = join(dir, 'print');
    const file = join(dir, 'stack.yaml');
    writeFileSync(file, 'influx:\n  database: demo\n  username: cfm\n  password: s3cret-for-the-test\n');
    const { stdout } = await exec(
      process.execPath,
      node('scripts/stack.ts', [
        ...['--schools', '4', '--interval-s', '20', '--api-port', '9123', '--influx-port', '18999'],
        ...['--data-dir', data, '--config', file, '--print-config'],
      ]),
      { cwd: dir },
    );
    expect(stdout).not.toContain('s3cret');
    const c = JSON.parse(stdout) as PrintedStack;
    expect(Object.keys(c)).toEqual([
      'log',
      ...['influx', 'broker', 'collector', 'poller', 'agent', 'api', 'alerts', 'rollup'],
    ]);
    // Its own InfluxDB, with the file's database and credentials (redacted).
    expect(c.influx).toMatchObject({
      url: 'http://127.0.0.1:18999/',
      database: 'demo',
      password: '[redacted]',
    });
    // The state files in the data directory, the API's port, the rollup and alerting the stack sets.
    expect(c.api).toMatchObject({
      port: 9123,
      registryFile: join(data, 'registry.json'),
      tokensFile: join(data, 'api-tokens.json'),
      calendarFile: join(data, 'stack-calendar.yaml'),
      mqtt: { username: 'api', password: '[redacted]' },
    });
    expect(c.alerts).toMatchObject({ stateFile: join(data, 'alerts-state.json'), groupWaitS: 10 });
    expect(c.alerts.channels).toMatchObject([
      { kind: 'webhook', name: 'terminal', url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/$/) },
    ]);
    expect(c.rollup).toMatchObject({ everyMs: 600_000 });
    expect(c.broker.credentialsFile).toBe(join(data, 'broker-credentials.yaml'));
    // Everyone reaches the broker's listener: the collector and poller directly, each agent through its school's
    // uplink relay; the poller polls a router per school on its port.
    const brokerUrl = `mqtt://127.0.0.1:${c.broker.listeners[0]!.port}`;
    expect(c.collector.mqtt).toMatchObject({
      url: brokerUrl,
      username: 'collector',
      password: '[redacted]',
    });
    expect(c.collector.registryFile).toBe(join(data, 'registry.json'));
    expect(c.poller.mqtt).toMatchObject({ url: brokerUrl, password: '[redacted]' });
    // The poller's targets and probes come from the registry alone (the routers' rows are written at start).
    expect(c.poller.targets).toEqual([]);
    expect(c.poller).toMatchObject({
      registryFile: join(data, 'registry.json'),
      credentialsFile: join(data, 'poller-credentials.yaml'),
      registryTargets: { intervalS: 20 },
      probes: { enabled: true, intervalS: 20 },
    });
    expect(c.agent).toMatchObject({
      kind: 'whiteboard',
      intervalS: 20,
      mqtt: { url: expect.stringMatching(/^mqtt:\/\/127\.0\.0\.1:\d+$/), password: '[redacted]' },
      // The classroom the history was written from (dev/city.ts ROOM_SIMULATION), and the person at its board.
      display: { source: 'simulated', useShare: 0.8, unattendedShare: 0.2 },
      activity: { source: 'simulated' },
    });
    expect(c.agent.mqtt.url).not.toBe(brokerUrl);
    // Nothing written: no state directory.
    expect(existsSync(data)).toBe(false);
  }, 60_000);

  it('brings a simulated city up, prints a summary from the stored data, and stops on Ctrl-C; the README commands act on it', async () => {
    const influxPort = await freePort();
    const first = await startStack(influxPort);
    let url: string;
    let admin: string;
    let ops: string;
    try {
      const out = first.out();
      expect(out).toMatch(/simulated city: 6 schools in 3 counties/);
      // The summary: a row per region with both goals as percentages, the congested rural school named.
      for (const region of ['杭州市', '西湖区', '余杭区', '淳安县'])
        expect(out).toMatch(new RegExp(`${region}[　 ]+\\d+ +\\d+\\.\\d %\\s+\\d+\\.\\d %`));
      expect(out).toMatch(/most congested uplinks[^\n]*\n +淳安县\S+ +\d+ % of class time busy, 50 Mbit\/s/);
      const shown = /API +(http:\/\/127\.0\.0\.1:\d+) +\(admin token: (cfm_\S+)\)/.exec(out);
      expect(shown, out).not.toBeNull();
      [, url, admin] = shown as unknown as [string, string, string];
      expect(out).toMatch(/state +var\/: registry\.json, api-tokens\.json, alerts-state\.json/);
      expect((await fetch(`${url}/health`)).status).toBe(200);
      expect(await schoolsSeen(url, admin)).toBe(6);
      // The poller polls and probes every router from the registry: each school's `link` (its last probe cycle,
      // a TCP connect to the router's management port) answered, in the live view and in InfluxDB.
      const links = async () => {
        const r = await get(`${url}/v1/schools`, admin);
        const body = (await r.json()) as {
          items: { id: string; link: { method: string; received: number } | null }[];
        };
        return body.items.filter((i) => i.link?.method === 'tcp' && i.link.received > 0).length;
      };
      await waitFor(async () => (await links()) === 6, {
        timeoutMs: 60_000,
        what: "every school's link probed over TCP and answered (/v1/schools link)",
      });
      await waitFor(async () => (await probesStored(influxPort)) >= 6, {
        timeoutMs: 30_000,
        what: 'probe cycles of the six routers in InfluxDB',
      });
      // The community is in the poller's credentials file (0600), not in the registry.
      expect(statSync(join(dir, 'var', 'poller-credentials.yaml')).mode & 0o777).toBe(0o600);
      const registry = readFileSync(join(dir, 'var', 'registry.json'), 'utf8');
      expect(registry).not.toContain('public');
      const routers = (JSON.parse(registry) as { devices: Record<string, unknown>[] }).devices.filter(
        (d) => d.kind === 'router',
      );
      expect(routers).toHaveLength(6);
      for (const d of routers)
        expect(d).toMatchObject({
          mgmtAddress: '127.0.0.1',
          snmpPort: expect.any(Number),
          snmpVersion: '2c',
          credentialRef: 'city',
          probeMethod: 'tcp',
          probePort: expect.any(Number),
        });
      expect((await fetch(`${url}/overview`)).status).toBe(200);
      // What to open first: the console, its link printed with the admin token.
      expect(out).toContain(`console         ${url}/console/#token=${admin}`);
      expect((await fetch(`${url}/console/`)).status).toBe(200);
      // The summary's idle whiteboards are the console's 闲置设备 (/v1/audit/idle): one threshold, the history's
      // 2 teaching days.
      const idle = /idle equipment: (\d+) whiteboards not used in 2 teaching days/.exec(out);
      expect(idle, out).not.toBeNull();
      // Over the console's default period, the last 30 days, saying how much of it the history covers.
      const [, from, to] = /Summary (\d{4}-\d\d-\d\d) … (\d{4}-\d\d-\d\d), the last 30 days/.exec(out) ?? [];
      expect(dayNumber(to!) - dayNumber(from!)).toBe(29);
      expect(out).toMatch(/judged on [1-3] of \d+ teaching days/);
      const audit = await get(`${url}/v1/audit/idle?period=${from}..${to}`, admin);
      expect(audit.status).toBe(200);
      expect(await audit.json()).toMatchObject({ idleDays: 2, total: Number(idle![1]) });
      // Classroom use as the audit reports it: the history's whiteboards speak v2, so their use rests on activity,
      // and some periods ran with nobody at the board (docs/usage.md).
      const use =
        /whiteboards in class time: (\d+) h on, (\d+) h in use, (\d+) h on but unused; \d+ h left on outside class; use judged by activity for (\d+) of (\d+)/.exec(
          out,
        );
      expect(use, out).not.toBeNull();
      const [onH, useH, unusedH, byActivity, boards] = use!.slice(1).map(Number) as [
        number,
        number,
        number,
        number,
        number,
      ];
      expect(useH).toBeGreaterThan(0);
      expect(unusedH).toBeGreaterThan(0);
      expect(Math.abs(onH - useH - unusedH)).toBeLessThanOrEqual(2); // each sum rounded on its own
      expect(byActivity).toBeGreaterThan(0);
      expect(byActivity).toBeLessThanOrEqual(boards);

      // README: a rollup backfill against the quickstart, with the configuration file it writes.
      expect(statSync(join(dir, 'var', 'stack.yaml')).mode & 0o777).toBe(0o600);
      const today = localDate(Date.now());
      const rolled = await api('rollup', '--config', 'var/stack.yaml', '--from', today, '--to', today);
      expect(rolled.code, rolled.stderr).toBe(0);

      // README: `npm run api -- tokens add …` — the running API accepts the token within seconds.
      const add = await api('tokens', 'add', '城域网运维', '--role', 'ops');
      expect(add.code, add.stderr).toBe(0);
      expect(add.stderr).toContain('to var/api-tokens.json');
      ops = add.stdout.trim();
      await waitFor(async () => (await schoolsSeen(url, ops)) === 6, {
        timeoutMs: 10_000,
        what: 'the API to accept the token added by `npm run api -- tokens add`',
      });

      // README: `npm run api -- import …` — a school in 淳安县 (330127), a region of the quickstart's registry.
      const file = join(dir, 'schools.csv');
      writeFileSync(
        file,
        'id,name,region,area,level,classes,students,teachers\n3301279001,淳安县新建小学,330127,rural,primary,4,120,10\n',
      );
      const imported = await api('import', file);
      expect(imported.code, imported.stderr).toBe(0);
      expect(imported.stderr).toContain('into var/registry.json');
      await waitFor(async () => (await schoolsSeen(url, ops)) === 7, {
        timeoutMs: 10_000,
        what: 'the API to serve the imported school',
      });
    } finally {
      first.child.kill('SIGINT');
    }
    await stop(first);
    // Its influxd is gone too: the port is free again.
    await expect(fetch(`http://127.0.0.1:${influxPort}/ping`)).rejects.toThrow();

    // A restart keeps the tokens (no new admin token: it says how to add one) and the imported school.
    const second = await startStack(influxPort);
    try {
      const out = second.out();
      expect(out).not.toMatch(/admin token: cfm_/);
      expect(out).toContain('npm run api -- tokens add <name> --role admin');
      expect(out).toMatch(/registry\.json also holds 1 school not in the simulated city/);
      [, url] = /API +(http:\/\/127\.0\.0\.1:\d+)/.exec(out) as unknown as [string, string];
      expect(await schoolsSeen(url, admin)).toBe(7);
      expect(await schoolsSeen(url, ops)).toBe(7);
    } finally {
      second.child.kill('SIGINT');
    }
    await stop(second);
  }, 420_000);
});
