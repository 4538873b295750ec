import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../dev/ports.js';
import { waitFor } from '../helpers/influx.js';

/**
 * The README's first command, minus the install step: `npm run stack` over a small simulated city, in its own
 * data folder. It must come up, print a summary computed from what it stored, serve the API and the overview
 * page, and stop cleanly on Ctrl-C (SIGINT), taking its influxd with it.
 */
const dir = mkdtempSync(join(tmpdir(), 'cfm-quickstart-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('quickstart (npm run stack)', () => {
  it('brings a simulated city up, prints a summary from the stored data, and stops on Ctrl-C', async () => {
    const influxPort = await freePort();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'scripts/stack.ts',
        '--schools',
        '6',
        '--classrooms',
        '2',
        '--history-days',
        '2',
        '--outage-after-s',
        '0',
        '--api-port',
        '0',
        '--influx-port',
        String(influxPort),
        '--data-dir',
        dir,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => out.includes('Ctrl-C stops everything.') || child.exitCode !== null, {
        timeoutMs: 120_000,
        what: 'the stack to come up',
      });
      expect(child.exitCode, `${out}\n${err}`).toBeNull();
      expect(out).toMatch(/simulated city: 6 schools in 3 counties/);
      // The summary: a row per region with both goals as percentages, the congested rural school named.
      for (const region of ['杭州市', '西湖区', '余杭区', '淳安县'])
        expect(out).toMatch(new RegExp(`${region}[　 ]+\\d+ +\\d+\\.\\d %\\s+\\d+\\.\\d %`));
      expect(out).toMatch(/most congested uplinks[^\n]*\n +淳安县\S+ +\d+ % of class time busy, 50 Mbit\/s/);
      const api = /API +(http:\/\/127\.0\.0\.1:\d+) +\(admin token: (cfm_\S+)\)/.exec(out);
      expect(api, out).not.toBeNull();
      const [, url, token] = api!;
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const schools = (await (
        await fetch(`${url}/v1/schools`, { headers: { authorization: `Bearer ${token}` } })
      ).json()) as { total: number };
      expect(schools.total).toBe(6);
      expect((await fetch(`${url}/overview`)).status).toBe(200);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited, `${out}\n${err}`).toBe(0);
    expect(out).toContain('stopping…');
    // Its influxd is gone too: the port is free again.
    await expect(fetch(`http://127.0.0.1:${influxPort}/ping`)).rejects.toThrow();
  }, 180_000);
});
