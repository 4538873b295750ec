import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { stringify } from 'yaml';
import { FATAL_STORAGE_EXIT_CODE } from '../../collector/collector.js';
import { EXAMPLES } from '../../contracts/examples.js';
import { buildTopic } from '../../contracts/topics.js';
import { trackChild } from '../../dev/children.js';
import { Influxd, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';

/**
 * InfluxDB refuses the collector's writes for good (403: a read-only user; the same path as 401 and 404): the
 * process stops with a non-zero status that systemd records as a failure, and the message it could not write
 * was not acknowledged, so a collector with working credentials gets it from the broker.
 */
const influxd = new Influxd({ authEnabled: true });
const mosquitto = new Mosquitto();
const admin = { username: 'admin', password: 'adm1n-pw' };
const tmp = mkdtempSync(join(tmpdir(), 'cfm-fatal-'));
beforeAll(async () => {
  await Promise.all([influxd.start(), mosquitto.start()]);
  await influxd.query(`CREATE USER admin WITH PASSWORD '${admin.password}' WITH ALL PRIVILEGES`);
  await influxd.query(
    "CREATE DATABASE fatal; CREATE USER reader WITH PASSWORD 'r'; GRANT READ ON fatal TO reader; CREATE USER writer WITH PASSWORD 'w'; GRANT ALL ON fatal TO writer",
    undefined,
    admin,
  );
});
afterAll(async () => {
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(tmp, { recursive: true, force: true });
});

function runCollector(user: { username: string; password: string }) {
  const file = join(tmp, `${user.username}.yaml`);
  writeFileSync(
    file,
    stringify({
      influx: { url: influxd.url, database: 'fatal', createDatabase: false, flushIntervalMs: 50, ...user },
      collector: {
        mqtt: { url: mosquitto.url, clientId: 'fatal-collector', reconnectMinMs: 50 },
        metrics: { port: 0 },
        registryFile: join(tmp, 'no-registry.json'),
      },
    }),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', 'collector/main.ts', '--config', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  trackChild(child, 'collector');
  let output = '';
  child.stdout!.on('data', (b: Buffer) => {
    output += b.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, exited, output: () => output };
}

describe('a fatal storage error', () => {
  it(`exits with status ${FATAL_STORAGE_EXIT_CODE}, and the unwritten message stays with the broker`, async () => {
    const ro = runCollector({ username: 'reader', password: 'r' });
    await waitFor(() => ro.output().includes('"subscribed"'), { what: 'subscribed', timeoutMs: 30_000 });
    const pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'fatal-pub', protocolVersion: 5 });
    onTestFinished(() => pub.endAsync());
    const ts = Date.now() - 1_000;
    await pub.publishAsync(
      buildTopic({ school: 'S1', device: 'D1', channel: 'telemetry' }),
      JSON.stringify({ ...EXAMPLES.telemetry, ts, display: undefined }),
      { qos: 1 },
    );
    expect(await ro.exited).toBe(FATAL_STORAGE_EXIT_CODE);
    expect(ro.output()).toContain('CFM_STORAGE_AUTH');

    const rw = runCollector({ username: 'writer', password: 'w' });
    await waitFor(
      async () => {
        const r = (await influxd.query('SELECT cpu_pct FROM host', 'fatal', admin)) as {
          results: { series?: { values: [number, number][] }[] }[];
        };
        return r.results[0]?.series?.[0]?.values[0]?.[0] === ts;
      },
      { what: 'the message stored by the next collector', timeoutMs: 30_000 },
    );
    rw.child.kill('SIGTERM');
    expect(await rw.exited).toBe(0);
  });
});
