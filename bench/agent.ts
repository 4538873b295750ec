// npm run bench:agent [-- --seconds 60 --interval 10 --node-flags='…' --env='K=V …' --sea --bundle FILE]
//
// The classroom agent's footprint as deployed: one bundled file (npm run build:agent), run as its own process
// against a real Mosquitto, reading host health, a simulated display and simulated activity (every source the
// agent has) every `interval` seconds. Beside it, bare Node with the same flags, doing nothing but a timer at
// the same interval, is measured the same way: the floor no JavaScript program can go below, so the agent's
// own share is the difference. Both processes' RSS and CPU time are sampled from /proc every second over the
// same steady-state window, which starts at the agent's first reading (start-up is reported apart).
// Target: ≤ 60 MB RSS in total and < 1 % of one core at one reading every 10 s.
//
// `--bundle FILE`: measure that bundle instead of building one (e.g. an older version's, for a before/after).
// `--sea`: the agent as the single executable (npm run build:agent:sea, scripts/build-agent-sea.ts) built on
// this machine's Node, the form deployed on Windows, instead of `node cfm-agent.mjs`.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { agentConfigSchema } from '../agents/classroom/agent.js';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../agents/classroom/node-flags.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';

const { values } = benchArgs('bench:agent', {
  options: {
    seconds: { type: 'string', default: '60' },
    interval: { type: 'string', default: '10' },
    'node-flags': { type: 'string', default: AGENT_NODE_FLAGS.join(' ') },
    env: {
      type: 'string',
      default: Object.entries(AGENT_ENV)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
    },
    sea: { type: 'boolean', default: false },
    bundle: { type: 'string' },
  },
});
const NODE_FLAGS = values['node-flags'].split(' ').filter(Boolean);
const ENV = Object.fromEntries(
  values.env
    .split(' ')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const SECONDS = numberArg('bench:agent', 'seconds', values.seconds);
const INTERVAL_S = numberArg('bench:agent', 'interval', values.interval);
const root = fileURLToPath(new URL('..', import.meta.url));
const CLK_TCK = 100; // USER_HZ on Linux

const bundle = values.bundle ?? join(root, 'dist/cfm-agent.mjs');
const sea = join(root, 'dist/sea/cfm-agent');
if (!values.bundle)
  execFileSync('npm', ['run', '--silent', values.sea ? 'build:agent:sea' : 'build:agent'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
if (values.sea) {
  // Just written, the whole 100 MB executable is in the page cache, and Linux maps cached neighbours of every
  // page the process touches ("fault-around"): 8–9 MB more RSS than the same code read from disk as needed,
  // as /usr/bin/node is. Written back and dropped from the cache, it starts as an installed one does.
  execFileSync('sync', [sea]);
  execFileSync('dd', [`if=${sea}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
}

/** RSS and CPU time of a process, from /proc (proc(5)). */
function stat(pid: number): { cpuS: number; rssMb: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const cpuTicks = Number(f[11]) + Number(f[12]); // utime + stime (proc(5) fields 14, 15)
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return { cpuS: cpuTicks / CLK_TCK, rssMb: rssKb / 1024 };
}

/** Samples a process from `begin()` for the window; the same for the agent and for bare Node. */
class Sampler {
  private first = { cpuS: 0, rssMb: 0 };
  private last = { cpuS: 0, rssMb: 0 };
  maxRssMb = 0;
  constructor(readonly pid: number) {}
  begin() {
    this.first = stat(this.pid);
    this.last = this.first;
    this.maxRssMb = this.first.rssMb;
    return this.first;
  }
  sample() {
    this.last = stat(this.pid);
    this.maxRssMb = Math.max(this.maxRssMb, this.last.rssMb);
  }
  result(wallS: number) {
    return {
      rssMb: this.last.rssMb,
      maxRssMb: this.maxRssMb,
      cpuPct: (100 * (this.last.cpuS - this.first.cpuS)) / wallS,
    };
  }
}

const dir = benchTempDir('cfm-bench-agent-');
const mosquitto = await new Mosquitto().start();
try {
  const sub = await mqtt.connectAsync(mosquitto.url, { clientId: 'bench-sub' });
  let received = 0;
  sub.on('message', (topic) => {
    if (topic.endsWith('/telemetry')) received++;
  });
  await sub.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });

  const config = join(dir, 'agent.yaml');
  const agent: Record<string, unknown> = {
    school: '3133001234',
    device: 'bench-ops',
    classroom: 'c0701',
    kind: 'panel',
    intervalS: INTERVAL_S,
    mqtt: { url: mosquitto.url, clientId: 'bench-ops' },
    spool: { dir: join(dir, 'spool') },
    display: { source: 'simulated' },
  };
  // Every source on: the activity source too, once the agent has one (issue #16's agent side adds it).
  if ('activity' in agentConfigSchema.shape) agent.activity = { source: 'simulated' };
  const sources = ['host', 'simulated display', ...(agent.activity ? ['simulated activity'] : [])];
  writeFileSync(config, JSON.stringify({ log: { level: 'warn' }, agent }));

  // The same flags and environment as deployed (the systemd unit), for both; for the single executable the
  // flags as it takes them (NODE_OPTIONS).
  const [command, args, env] = values.sea
    ? [join(root, 'dist/sea/cfm-agent'), ['--config', config], { ...ENV, NODE_OPTIONS: NODE_FLAGS.join(' ') }]
    : [process.execPath, [...NODE_FLAGS, bundle, '--config', config], ENV];
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const bare = spawn(process.execPath, [...NODE_FLAGS, '-e', `setInterval(() => {}, ${INTERVAL_S * 1000})`], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((_, reject) => {
    for (const p of [child, bare])
      p.once('exit', (code) => reject(new Error(`${p.spawnfile} exited (${code}) during the bench`)));
  });
  exited.catch(() => undefined);
  try {
    // Start-up (loading modules, first connect) is measured apart from the steady state.
    while (received === 0) await Promise.race([new Promise((r) => setTimeout(r, 50)), exited]);
    const agentS = new Sampler(child.pid!);
    const bareS = new Sampler(bare.pid!);
    const start = agentS.begin();
    bareS.begin();
    const startRead = received;
    const t0 = performance.now();
    while (performance.now() - t0 < SECONDS * 1000) {
      await Promise.race([new Promise((r) => setTimeout(r, 1000)), exited]);
      agentS.sample();
      bareS.sample();
    }
    const wallS = (performance.now() - t0) / 1000;
    const a = agentS.result(wallS);
    const b = bareS.result(wallS);

    const what = values.sea
      ? 'single executable dist/sea/cfm-agent'
      : `bundled agent ${relative(root, bundle)}`;
    console.log(
      `agent bench: ${what} (node ${NODE_FLAGS.join(' ') || 'without flags'}${values.env ? `, ${values.env}` : ''}), one reading every ${INTERVAL_S} s (${sources.join(' + ')}), ${wallS.toFixed(0)} s steady state`,
    );
    console.log(
      `  readings received by the broker's subscriber: ${received - startRead} in the window; CPU time at first reading ${start.cpuS.toFixed(2)} s`,
    );
    console.log(
      `RSS: agent ${a.rssMb.toFixed(1)} MB at end, ${a.maxRssMb.toFixed(1)} MB max; bare node ${b.rssMb.toFixed(1)} MB at end, ${b.maxRssMb.toFixed(1)} MB max; the agent's own share +${(a.rssMb - b.rssMb).toFixed(1)} MB at end, +${(a.maxRssMb - b.maxRssMb).toFixed(1)} MB max (target: agent ≤ 60 MB)`,
    );
    console.log(
      `CPU: agent ${a.cpuPct.toFixed(2)} %, bare node ${b.cpuPct.toFixed(2)} % of one core (target: agent < 1 %)`,
    );
  } finally {
    for (const p of [child, bare]) p.removeAllListeners('exit');
    await Promise.all(
      [child, bare].map((p) =>
        p.exitCode !== null || p.signalCode !== null
          ? undefined
          : new Promise((r) => {
              p.once('exit', r);
              p.kill('SIGTERM');
            }),
      ),
    );
    await sub.endAsync();
  }
} finally {
  await mosquitto.dispose();
  rmSync(dir, { recursive: true, force: true });
}
