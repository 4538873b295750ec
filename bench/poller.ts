// npm run bench:poller [-- --schools 1600 --ifaces 8 --interval 60 --window 2 --count 10 --period 1000 --gap 0.5]
// npm run bench:poller -- --quick   (a smoke run: 200 schools, every 10 s, 3 probes each, one interval)
//
// A city's schools from ONE poller process, polling and probing together as in production: `--schools`
// simulated routers (bench/snmp-router.ts, lean SNMPv2c responders with `--ifaces` interfaces each, in separate
// processes, one UDP port each on 127.0.0.1) polled every `--interval` seconds, and as many probe targets
// (127.1.x.y: every 127.0.0.0/8 address answers ICMP on loopback) probed every `--interval` seconds, `--count`
// probes each by one fping per cycle; everything published to a real Mosquitto through the poller's
// ReliablePublisher. The poller runs in a child process (bench/snmp-poller.ts), so its CPU — and its reaped fping
// children's — is read from /proc/<pid>/stat over a window of `--window` whole intervals, from the end of one
// probe cycle to the end of another (each fping run counted once). Before that, the child measures each kind
// alone (one pollAll(), one probeAll(), manual mode), which splits the cost per 1,000 interface polls and per
// 1,000 probes. Prints both, and the share of one core for that many schools every 60 s.
import { fork } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { trackChild } from '../dev/children.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { waitFor } from '../dev/ports.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';
import { forkRouterHosts, startRouters } from './sim-routers.js';
import { processCpuSeconds } from './snmp-peers.js';
import type { SoloCost } from './snmp-poller.js';

const { values } = benchArgs('bench:poller', {
  options: {
    quick: { type: 'boolean', default: false },
    schools: { type: 'string' },
    ifaces: { type: 'string', default: '8' },
    interval: { type: 'string' },
    window: { type: 'string' },
    count: { type: 'string' },
    period: { type: 'string' },
    gap: { type: 'string', default: '0.5' },
    'agent-procs': { type: 'string', default: '2' },
  },
});
const quick = values.quick;
const SCHOOLS = numberArg('bench:poller', 'schools', values.schools ?? (quick ? 200 : 1600));
const IFACES = numberArg('bench:poller', 'ifaces', values.ifaces);
const INTERVAL_S = Math.max(10, numberArg('bench:poller', 'interval', values.interval ?? (quick ? 10 : 60)));
const WINDOW = Math.max(1, numberArg('bench:poller', 'window', values.window ?? (quick ? 1 : 2)));
const COUNT = numberArg('bench:poller', 'count', values.count ?? (quick ? 3 : 10));
const PERIOD_MS = numberArg('bench:poller', 'period', values.period ?? (quick ? 500 : 1000));
const GAP_MS = numberArg('bench:poller', 'gap', values.gap, 0);
const AGENT_PROCS = Math.max(1, numberArg('bench:poller', 'agent-procs', values['agent-procs']));

interface Stats {
  ifacePolls: number;
  failures: number;
  icmpResults: number;
  probeCycles: number;
  skippedCycles: number;
  fpingFailures: number;
  missingResults: number;
  badLines: number;
}

const agents = forkRouterHosts(AGENT_PROCS);
for (const a of agents) trackChild(a, 'bench simulated routers');
const mosquitto = await new Mosquitto().start();
const dir = benchTempDir('cfm-bench-poller-');
const child = fork(new URL('./snmp-poller.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] });
trackChild(child, 'bench poller', dir);
try {
  const ports = await startRouters(agents, SCHOOLS, IFACES);
  const school = (i: number) => String(3_301_060_000 + i);
  const config = {
    mqtt: { url: mosquitto.url, clientId: 'bench-poller-probes' },
    spool: { dir: join(dir, 'spool') },
    concurrency: 64,
    targets: ports.map((port, i) => ({
      device: `rtr-${i}`,
      school: school(i),
      address: '127.0.0.1',
      port,
      community: 'public',
      uplink: 1,
      intervalS: INTERVAL_S,
      timeoutMs: 5_000,
      maxRepetitions: 50,
    })),
    probes: {
      enabled: true,
      intervalS: INTERVAL_S,
      count: COUNT,
      periodMs: PERIOD_MS,
      timeoutMs: 1_000,
      gapMs: GAP_MS,
      targets: ports.map((_, i) => ({
        school: school(i),
        device: `rtr-${i}`,
        address: `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      })),
    },
  };
  const solo = await new Promise<SoloCost>((resolve, reject) => {
    child.once('message', (m: { solo: SoloCost }) => resolve(m.solo));
    child.once('exit', (code) => reject(new Error(`bench poller exited (${code})`)));
    child.send({ config, solo: true });
  });
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  const stats = () =>
    new Promise<Stats>((resolve) => {
      child.once('message', (m: Stats) => resolve(m));
      child.send({ stats: true });
    });

  // Warm-up: every router polled twice (rates seeded) and a probe cycle done; the window opens as one ends.
  let s = await stats();
  const round = SCHOOLS * IFACES;
  await waitFor(
    async () => {
      s = await stats();
      return s.ifacePolls >= 2 * round && s.icmpResults >= SCHOOLS;
    },
    { timeoutMs: (3 * INTERVAL_S + 30) * 1000, intervalMs: 200, what: 'a warm-up round of polls and probes' },
  );
  const cycleEnd = async (n: number) =>
    waitFor(
      async () => {
        s = await stats();
        return s.icmpResults >= n;
      },
      { timeoutMs: (2 * INTERVAL_S + 30) * 1000, intervalMs: 100, what: 'a probe cycle to end' },
    );
  const firstEnd = (Math.floor(s.icmpResults / SCHOOLS) + 1) * SCHOOLS;
  await cycleEnd(firstEnd);
  const before = { stats: s, cpu: processCpuSeconds(child.pid!), t: performance.now() };
  await cycleEnd(firstEnd + WINDOW * SCHOOLS);
  const after = { stats: s, cpu: processCpuSeconds(child.pid!), t: performance.now() };

  const windowS = (after.t - before.t) / 1000;
  const ownS = after.cpu.own - before.cpu.own;
  const fpingS = after.cpu.children - before.cpu.children;
  const polls = after.stats.ifacePolls - before.stats.ifacePolls;
  const probes = (after.stats.icmpResults - before.stats.icmpResults) * COUNT;
  const per1k = (cpuS: number, n: number) => ((cpuS / n) * 1000).toFixed(4);
  const intervals = windowS / INTERVAL_S;
  const at60 = (cpuS: number) => ((cpuS / intervals / 60) * 100).toFixed(2);
  const problems = [
    after.stats.failures && `${after.stats.failures} polls failed`,
    solo.failedPolls && `${solo.failedPolls} solo polls failed`,
    after.stats.fpingFailures && `fpingFailures ${after.stats.fpingFailures}`,
    after.stats.missingResults && `missingResults ${after.stats.missingResults}`,
    after.stats.skippedCycles && `skippedCycles ${after.stats.skippedCycles}`,
    after.stats.badLines && `badLines ${after.stats.badLines}`,
  ].filter(Boolean);

  console.log(
    `poller bench: ${SCHOOLS} schools from one poller process — ${SCHOOLS} simulated routers × ${IFACES} interfaces (SNMPv2c, ${AGENT_PROCS} responder processes) polled every ${INTERVAL_S} s, and ${SCHOOLS} probe targets × ${COUNT} probes (period ${PERIOD_MS} ms, gap ${GAP_MS} ms) every ${INTERVAL_S} s, published to a real Mosquitto${quick ? ' (--quick)' : ''}`,
  );
  console.log(
    `  alone (manual mode, one round each): ${per1k(solo.pollCpuS, solo.ifacePolls)} CPU-s per 1,000 interface polls (${solo.ifacePolls} polls); ${per1k(solo.probeCpuS, solo.probes)} CPU-s per 1,000 probes + fping ${per1k(solo.fpingCpuS, solo.probes)} (${solo.probes} probes, ${solo.answered} answered)`,
  );
  console.log(
    `  together over ${windowS.toFixed(1)} s (${intervals.toFixed(2)} intervals): ${polls} interface polls, ${probes} probes; poller process ${ownS.toFixed(2)} CPU-s, fping ${fpingS.toFixed(2)} CPU-s = ${per1k(ownS + fpingS, polls + probes)} CPU-s per 1,000 polls+probes${problems.length ? `; PROBLEMS: ${problems.join(', ')}` : ''}`,
  );
  console.log(
    `  ${SCHOOLS} schools polled and probed every 60 s: ${at60(ownS + fpingS)} % of one core (poller process ${at60(ownS)} %, fping ${at60(fpingS)} %)`,
  );
  if (problems.length) process.exitCode = 1;
} finally {
  if (child.exitCode === null) {
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.send('stop');
    });
  }
  for (const a of agents) a.send('stop');
  await mosquitto.dispose();
  rmSync(dir, { recursive: true, force: true });
}
