// npm run bench:agent [-- --seconds 60 --interval 10]
//
// The classroom agent's footprint as deployed: one bundled file (npm run build:agent), run as its own process
// against a real Mosquitto, reading host health and a simulated display every `interval` seconds. Samples the
// process's RSS and CPU time from /proc every second. Target: ≤ 60 MB RSS and < 1% of one core at one reading
// every 10 s.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { AGENT_NODE_FLAGS } from '../agents/classroom/node-flags.js';
import { Mosquitto } from '../dev/mosquitto.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    interval: { type: 'string', default: '10' },
    'node-flags': { type: 'string', default: AGENT_NODE_FLAGS.join(' ') },
  },
});
const NODE_FLAGS = values['node-flags'].split(' ').filter(Boolean);
const SECONDS = Number(values.seconds);
const INTERVAL_S = Number(values.interval);
const root = fileURLToPath(new URL('..', import.meta.url));
const CLK_TCK = 100; // USER_HZ on Linux

execFileSync('npm', ['run', '--silent', 'build:agent'], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'inherit'],
});
const dir = mkdtempSync(join(tmpdir(), 'cfm-bench-agent-'));
const mosquitto = await new Mosquitto().start();
try {
  const sub = await mqtt.connectAsync(mosquitto.url, { clientId: 'bench-sub' });
  let received = 0;
  sub.on('message', (topic) => {
    if (topic.endsWith('/telemetry')) received++;
  });
  await sub.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });

  const config = join(dir, 'agent.yaml');
  writeFileSync(
    config,
    JSON.stringify({
      log: { level: 'warn' },
      agent: {
        school: '3133001234',
        device: 'bench-ops',
        classroom: 'c0701',
        kind: 'panel',
        intervalS: INTERVAL_S,
        mqtt: { url: mosquitto.url, clientId: 'bench-ops' },
        spool: { dir: join(dir, 'spool') },
        display: { source: 'simulated' },
      },
    }),
  );
  const child = spawn(
    process.execPath,
    [...NODE_FLAGS, join(root, 'dist/cfm-agent.mjs'), '--config', config],
    {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const stat = () => {
    const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const cpuTicks = Number(f[11]) + Number(f[12]); // utime + stime (proc(5) fields 14, 15)
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]);
    return { cpuS: cpuTicks / CLK_TCK, rssMb: rssKb / 1024 };
  };
  // Start-up (loading modules, first connect) is measured apart from the steady state.
  while (received === 0) await new Promise((r) => setTimeout(r, 50));
  const start = stat();
  const t0 = performance.now();
  let maxRss = start.rssMb;
  while (performance.now() - t0 < SECONDS * 1000) {
    await new Promise((r) => setTimeout(r, 1000));
    maxRss = Math.max(maxRss, stat().rssMb);
  }
  const end = stat();
  const wallS = (performance.now() - t0) / 1000;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await sub.endAsync();

  const cpuPct = (100 * (end.cpuS - start.cpuS)) / wallS;
  console.log(
    `agent bench: bundled agent dist/cfm-agent.mjs (node ${NODE_FLAGS.join(' ') || 'without flags'}), one reading every ${INTERVAL_S} s (host + simulated display), ${wallS.toFixed(0)} s steady state`,
  );
  console.log(
    `  readings received by the broker's subscriber: ${received}; CPU time at first reading ${start.cpuS.toFixed(2)} s`,
  );
  console.log(`RSS: ${end.rssMb.toFixed(1)} MB at end, ${maxRss.toFixed(1)} MB max (target ≤ 60 MB)`);
  console.log(`CPU: ${cpuPct.toFixed(2)} % of one core (target < 1 %)`);
} finally {
  await mosquitto.dispose();
  rmSync(dir, { recursive: true, force: true });
}
