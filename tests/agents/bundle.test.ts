// The agent's bundle (scripts/build-agent.ts) as `npm run build:agent` makes it: it leaves mqtt.js's WebSocket
// and SOCKS transports unloaded until asked for, and they still work when they are.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { build } from 'esbuild';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { Mosquitto } from '../../dev/mosquitto.js';
import { agentBuildOptions, agentBundlePlugin } from '../../scripts/build-agent.js';
import { waitFor } from '../helpers/influx.js';

let dir: string;
let bundle: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-bundle-'));
  bundle = join(dir, 'cfm-agent.mjs');
  await build(agentBuildOptions('esm', bundle));
}, 120_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the bundle with `node` until SIGTERM; `loaded` is Node's list of the modules it loaded by then. */
function runAgent(name: string, url: string) {
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      log: { level: 'warn' },
      agent: {
        school: '3133001234',
        device: name,
        intervalS: 1,
        mqtt: { url, clientId: name },
        spool: { dir: join(dir, `spool-${name}`) },
        display: { source: 'simulated' },
      },
    }),
  );
  const list = join(dir, `${name}.modules`);
  const preload = join(dir, `${name}-preload.mjs`);
  writeFileSync(
    preload,
    `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')));\n`,
  );
  let stderr = '';
  const child = spawn(process.execPath, ['--import', preload, bundle, '--config', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  children.push(child);
  return {
    get stderr() {
      return stderr;
    },
    async stop(): Promise<string[]> {
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      return readFileSync(list, 'utf8').split('\n');
    },
  };
}

describe('the agent bundle', () => {
  it('over MQTT on TCP loads no WebSocket, HTTP, zlib or SOCKS (dns) code', async () => {
    const mosquitto = await new Mosquitto().start();
    let sub: MqttClient | undefined;
    try {
      sub = await mqtt.connectAsync(mosquitto.url, { clientId: 'bundle-sub' });
      let readings = 0;
      sub.on('message', () => readings++);
      await sub.subscribeAsync('cfm/v1/3133001234/tcp-agent/telemetry', { qos: 1 });
      const agent = runAgent('tcp-agent', mosquitto.url);
      await waitFor(() => readings >= 2, { what: 'two readings over TCP', timeoutMs: 30_000 });
      const loaded = await agent.stop();
      expect(loaded).toContain('NativeModule net'); // the list is the real one
      for (const m of ['http', 'https', 'zlib', 'dns'])
        expect(loaded, `${m} loaded`).not.toContain(`NativeModule ${m}`);
      expect(agent.stderr).toBe('');
    } finally {
      await sub?.endAsync();
      await mosquitto.dispose();
    }
  });

  it('over MQTT on WebSocket loads ws when the URL asks for it, without the native add-ons', async () => {
    const broker = await Aedes.createBroker();
    const published: string[] = [];
    broker.on('publish', (packet) => {
      published.push(packet.topic);
    });
    const http: Server = createServer();
    const wss = new WebSocketServer({ server: http });
    wss.on('connection', (socket) => broker.handle(createWebSocketStream(socket) as never));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      const port = (http.address() as { port: number }).port;
      const agent = runAgent('ws-agent', `ws://127.0.0.1:${port}`);
      await waitFor(() => published.filter((t) => t === 'cfm/v1/3133001234/ws-agent/telemetry').length >= 2, {
        what: 'two readings over WebSocket',
        timeoutMs: 30_000,
      });
      const loaded = await agent.stop();
      expect(loaded).toContain('NativeModule http'); // ws's client
      expect(agent.stderr).toBe('');
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise((r) => http.close(r));
      await new Promise<void>((r) => broker.close(() => r()));
    }
  });

  it('fails to build, naming the file, when mqtt.js no longer has the code it changes', async () => {
    const fake = join(dir, 'fake');
    const connect = join(fake, 'node_modules/mqtt/build/lib/connect');
    mkdirSync(connect, { recursive: true });
    writeFileSync(join(connect, 'index.js'), "protocols.ws = require('./websocket').builder;\n");
    writeFileSync(join(fake, 'entry.js'), "require('./node_modules/mqtt/build/lib/connect/index.js');\n");
    await expect(
      build({
        entryPoints: [join(fake, 'entry.js')],
        bundle: true,
        platform: 'node',
        write: false,
        logLevel: 'silent',
        plugins: [agentBundlePlugin],
      }),
    ).rejects.toThrow(/connect[\\/]index\.js: expected 2 × .*found 0: mqtt\.js changed/);
  });
});
