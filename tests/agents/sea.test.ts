// The classroom agent as a single executable (scripts/build-agent-sea.ts): built here on this machine's Node —
// the same blob and the same injection as for Windows, only the binary differs — and run as a process against
// a real Mosquitto, as a service manager runs it.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { MqttClient } from 'mqtt';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../../agents/classroom/node-flags.js';
import { SESSION_HELPER_SCRIPT } from '../../agents/sources/activity/windows-script.js';
import { decodePayload } from '../../contracts/messages.js';
import type { Channel } from '../../contracts/topics.js';
import { Mosquitto } from '../../dev/mosquitto.js';
import {
  binaryNodeVersion,
  buildAgentSea,
  SEA_FUSE,
  seaCommandLine,
  stripAuthenticode,
  WINDOWS_PACKAGE_FILES,
  WINDOWS_PACKAGE_GENERATED,
  windowsPackage,
} from '../../scripts/build-agent-sea.js';
import { waitFor } from '../helpers/influx.js';

const exec = promisify(execFile);
let dir: string;
let exe: string;
let mosquitto: Mosquitto;
let sub: MqttClient;
const received: { topic: string; raw: string; payload: Record<string, unknown> }[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cfm-sea-'));
  ({ executable: exe } = await buildAgentSea({ workDir: dir }));
  mosquitto = await new Mosquitto().start();
  sub = await mqtt.connectAsync(mosquitto.url, { clientId: 'sea-test-sub' });
  sub.on('message', (topic, payload) =>
    received.push({ topic, raw: payload.toString(), payload: JSON.parse(payload.toString()) }),
  );
  await sub.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });
}, 180_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await sub?.endAsync();
  await mosquitto?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, agent: Record<string, unknown>, level = 'info'): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify({ log: { level }, agent }));
  return file;
}

describe('the agent as a single executable', () => {
  it('is this Node with the blob in it: its fuse flipped, its usage the agent’s', async () => {
    const binary = readFileSync(exe);
    expect(binary.includes(`${SEA_FUSE}:1`)).toBe(true);
    expect(binaryNodeVersion(binary)).toBe(process.versions.node);
    const { stdout } = await exec(exe, ['--help']);
    expect(stdout).toMatch(/^usage: npm run agent -- \[--config FILE\] \[--print-config\]/);
  });

  it('refuses a bad configuration with exit code 2 naming the key, and prints a good one redacted', async () => {
    const bad = config('bad.yaml', { school: '3133001234', device: 'sea', intervalS: 0 });
    const err = await exec(exe, ['--config', bad]).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 2 });
    expect((err as { stderr: string }).stderr).toMatch(
      /^agent: configuration error: .*bad\.yaml: agent\.intervalS: /m,
    );

    const good = config('good.yaml', {
      school: '3133001234',
      device: 'sea',
      mqtt: { url: mosquitto.url, password: 'sea-sentinel-secret' },
    });
    const { stdout } = await exec(exe, ['--config', good, '--print-config']);
    expect(JSON.parse(stdout).agent).toMatchObject({
      school: '3133001234',
      mqtt: { password: '[redacted]' },
    });
    expect(stdout).not.toContain('sea-sentinel-secret');
  });

  it('runs the agent: online, readings, its memory cap from NODE_OPTIONS, a clean offline on SIGTERM', async () => {
    const file = config('run.yaml', {
      school: '3133001234',
      device: 'sea-ops',
      kind: 'panel',
      intervalS: 1,
      mqtt: { url: mosquitto.url, clientId: 'sea-ops' },
      spool: { dir: join(dir, 'spool') },
      display: { source: 'simulated' },
    });
    let stdout = '';
    let stderr = '';
    const child = spawn(exe, ['--config', file], {
      // The Windows service passes the agent's Node flags so (deploy/windows/cfm-agent-service.xml).
      env: { ...process.env, NODE_OPTIONS: AGENT_NODE_FLAGS.join(' ') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const from = (channel: string) =>
      received.filter((m) => m.topic === `cfm/v1/3133001234/sea-ops/${channel}`).map((m) => m.payload);
    await waitFor(() => from('telemetry').length >= 2, { what: 'two readings', timeoutMs: 30_000 });
    expect(from('status')[0]).toMatchObject({ state: 'online', reason: 'birth', kind: 'panel' });
    expect(from('telemetry')[0]).toMatchObject({ kind: 'panel', host: { nics: expect.any(Array) } });
    // Every message as the collector reads it (contracts/messages.ts).
    for (const m of received.filter((r) => r.topic.startsWith('cfm/v1/3133001234/sea-ops/'))) {
      const channel = m.topic.split('/').at(-1) as Channel;
      expect(decodePayload(channel, m.raw), m.raw).toMatchObject({ ok: true });
    }
    expect(from('telemetry')[0]!.display).toBeDefined();

    const starting = stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; heapLimitMb?: number })
      .find((l) => l.msg === 'starting');
    // --max-old-space-size=64 caps the old generation; V8's limit adds the young generation on top.
    expect(starting?.heapLimitMb).toBeGreaterThanOrEqual(64);
    expect(starting?.heapLimitMb).toBeLessThan(128);

    const exited = new Promise<number | null>((r) => child.once('exit', r));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitFor(() => from('status').some((s) => s.state === 'offline'), { what: 'offline status' });
    expect(from('status').at(-1)).toMatchObject({ state: 'offline', reason: 'shutdown' });
    // Nothing on stderr: no warning of Node's about modules a single executable cannot load.
    expect(stderr).toBe('');
  });
});

describe('scripts/build-agent-sea.ts refuses a binary it cannot use', () => {
  it('one of another Node version, or one without the fuse, naming the problem', async () => {
    const other = join(dir, 'node-other.exe');
    writeFileSync(
      other,
      `MZ… https://nodejs.org/download/release/v18.0.0/node-v18.0.0-headers.tar.gz ${SEA_FUSE}:0`,
    );
    await expect(buildAgentSea({ node: other, workDir: join(dir, 'other') })).rejects.toThrow(
      /is Node\.js 18\.0\.0, this build runs on \d+\.\d+\.\d+: the blob must be made by the same version/,
    );
    const unknown = join(dir, 'not-node.exe');
    writeFileSync(unknown, 'MZ this is not node');
    await expect(buildAgentSea({ node: unknown, workDir: join(dir, 'unknown') })).rejects.toThrow(
      /is Node\.js \(unknown version\)/,
    );

    // An executable that already carries a blob has its fuse flipped: not a second time.
    const again = join(dir, 'again');
    copyFileSync(exe, again);
    await expect(buildAgentSea({ node: again, workDir: join(dir, 'again-out') })).rejects.toThrow(
      /no unused single-executable fuse/,
    );
  });
});

describe('the Windows package (scripts/build-agent-sea.ts --package)', () => {
  it('is the executable, WinSW and the files install.ps1 and the documentation name', () => {
    const winsw = join(dir, 'WinSW-x64.exe');
    writeFileSync(winsw, 'stands for WinSW');
    const pkg = join(dir, 'package');
    const files = windowsPackage(pkg, exe, winsw);
    expect(files.sort()).toEqual(
      [
        'cfm-agent.exe',
        'cfm-agent-service.exe',
        ...Object.keys(WINDOWS_PACKAGE_FILES),
        ...Object.keys(WINDOWS_PACKAGE_GENERATED),
      ].sort(),
    );
    // The session helper as install.ps1's task runs it: the agent's script, behind a UTF-8 byte-order mark.
    expect(readFileSync(join(pkg, 'cfm-session-helper.ps1'), 'utf8')).toBe(`\ufeff${SESSION_HELPER_SCRIPT}`);
    expect(readdirSync(pkg).sort()).toEqual(files);
    expect(readFileSync(join(pkg, 'cfm-agent.exe')).equals(readFileSync(exe))).toBe(true);
    expect(readFileSync(join(pkg, 'cfm-agent-service.exe'), 'utf8')).toBe('stands for WinSW');
  });

  it('is asked for with a node.exe and WinSW, or refused before anything is built', () => {
    expect(() => seaCommandLine(['--package', 'out'])).toThrow(/give --node a node\.exe/);
    expect(() => seaCommandLine(['--package', 'out', '--node', '/usr/bin/node'])).toThrow(
      /give --node a node\.exe/,
    );
    expect(() => seaCommandLine(['--package', 'out', '--node', 'node.exe'])).toThrow(/needs --winsw/);
    expect(() =>
      seaCommandLine(['--package', 'out', '--node', 'node.exe', '--winsw', join(dir, 'none.exe')]),
    ).toThrow(/none\.exe: no such file/);
    expect(() => seaCommandLine(['--nodes', 'x'])).toThrow(/Unknown option '--nodes'/);
    expect(seaCommandLine(['--node', 'C:/node.exe'])).toMatchObject({ node: 'C:/node.exe' });
    // The Windows guide's command line, as written there (WinSW stood in for by a file).
    const guide = readFileSync(new URL('../../docs/deploy-windows-agent.md', import.meta.url), 'utf8');
    const line = /^npm run build:agent:sea -- (.+)$/m.exec(guide)![1]!.split(' ');
    const winsw = join(dir, 'WinSW-x64.exe');
    writeFileSync(winsw, 'stands for WinSW');
    expect(seaCommandLine(line.map((a) => (a === 'WinSW-x64.exe' ? winsw : a)))).toMatchObject({
      node: 'node-v20.X.Y-win-x64/node.exe',
      package: 'dist/cfm-agent-windows',
    });
  });
});

describe('a signed node.exe loses its signature before the blob goes in (signtool remove /s)', () => {
  /** A PE32+ header with a certificate table of `cert` bytes at `at` (the end of the file when it fits). */
  function pe(cert: number, at = 0x200): Buffer {
    const b = Buffer.alloc(Math.max(0x200, at + cert));
    b.fill(0xcc, at, at + cert);
    b.write('MZ', 0, 'latin1');
    b.writeUInt32LE(0x80, 0x3c); // e_lfanew
    b.write('PE\0\0', 0x80, 'latin1');
    b.writeUInt16LE(0x20b, 0x98); // optional header magic: PE32+
    b.writeUInt32LE(0x1234, 0x98 + 64); // CheckSum
    b.writeUInt32LE(at, 0x98 + 112 + 32); // data directory 4: the certificate table
    b.writeUInt32LE(cert, 0x98 + 112 + 36);
    return b;
  }

  it('cuts the certificate table off and zeroes its entry and the checksum', () => {
    const signed = pe(0x40);
    const stripped = stripAuthenticode(signed);
    expect(stripped.length).toBe(0x200);
    expect(stripped.readUInt32LE(0x98 + 112 + 32)).toBe(0);
    expect(stripped.readUInt32LE(0x98 + 112 + 36)).toBe(0);
    expect(stripped.readUInt32LE(0x98 + 64)).toBe(0);
    expect(stripped.subarray(0, 0x98).equals(signed.subarray(0, 0x98))).toBe(true);
    expect(signed.readUInt32LE(0x98 + 112 + 36)).toBe(0x40); // the input is left as it was
  });

  it('leaves an unsigned PE and a file of another format as they are, and refuses a malformed one', () => {
    const unsigned = pe(0);
    expect(stripAuthenticode(unsigned)).toBe(unsigned);
    const elf = readFileSync(process.execPath).subarray(0, 4096);
    expect(stripAuthenticode(elf)).toBe(elf);
    const notAtEnd = pe(0x40, 0x180); // the table inside the file, not after it
    expect(() => stripAuthenticode(notAtEnd)).toThrow(/not at the end of the file/);
    const truncated = pe(0x40).subarray(0, 0x90);
    expect(() => stripAuthenticode(truncated)).toThrow(/not a PE file/);
    const badMagic = pe(0x40);
    badMagic.writeUInt16LE(0x999, 0x98);
    expect(() => stripAuthenticode(badMagic)).toThrow(/optional header magic/);
  });
});
