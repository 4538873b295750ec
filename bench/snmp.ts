// npm run bench:snmp [-- --agents 100 --ifaces 48 --rounds 5 --parallel 8 --interval 10 --window 3]
//
// Many simulated routers (bench/snmp-router.ts, 48 interfaces each, in separate processes) on loopback,
// polled in one run by
// (1) throughput: our poller — the same ten IF-MIB columns it reads in production, rates computed, readings
//     published to a real Mosquitto — as fast as it goes (`--rounds` polls of every target), and the C net-snmp
//     tools: `snmpbulkwalk` of each target's ifTable and ifXTable, `--parallel` processes at a time. Prints the
//     interface polls per second of each and their ratio. Target: ≥ 5,000 interface polls/s, and at least the
//     C tools' rate. The readings are checked: every interface, and the uplink's rates within 5 % of the
//     simulated traffic on a poll 5 s after the rounds (their own intervals are too short for sysUpTime ticks).
// (2) CPU per poll beside the peers: our poller (its own process, on its production schedule), collectd's snmp
//     plugin and snmp_exporter (scraped over HTTP), all polling every router once per `--interval` seconds at
//     the same time; each process's CPU is read from /proc/<pid>/stat over the same window of `--window`
//     intervals (a whole number of intervals, so each periodic poller's bursts count once) and divided by the
//     interface rows it delivered. Prints CPU-seconds per 1,000 interface polls of each and the ratios.
//     Target: below collectd's. The peers come from `deploy/install-deps.sh --bench`; one that cannot run is
//     printed with the reason instead of a number.
// `--profile FILE`: a V8 CPU profile of part (1)'s timed rounds of our poller only (node:inspector), written to
// FILE (open in Chrome DevTools or speedscope), and one of our poller's process over part (2)'s window, written to
// FILE.paced.cpuprofile; `--heap-profile FILE`: a sampling heap profile of the same rounds
// (what they allocate, by function: the garbage collector's work). `--skip-peers`: part (1) only.
import { execFile, fork } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { POLLED_COLUMNS, Poller, pollerConfigSchema } from '../agents/snmp/poller.js';
import { silentLogger } from '../common/log.js';
import { trackChild } from '../dev/children.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { waitFor } from '../dev/ports.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';
import { forkRouterHosts, startRouters } from './sim-routers.js';
import {
  cpuSeconds,
  type Peer,
  reapedChildrenCpuSeconds,
  startCollectd,
  startExporter,
} from './snmp-peers.js';

const { values } = benchArgs('bench:snmp', {
  options: {
    agents: { type: 'string', default: '100' },
    ifaces: { type: 'string', default: '48' },
    rounds: { type: 'string', default: '5' },
    parallel: { type: 'string', default: '8' },
    'agent-procs': { type: 'string', default: '2' },
    interval: { type: 'string', default: '10' },
    window: { type: 'string', default: '3' },
    profile: { type: 'string' },
    'heap-profile': { type: 'string' },
    'skip-peers': { type: 'boolean', default: false },
  },
});
const AGENTS = numberArg('bench:snmp', 'agents', values.agents);
const IFACES = numberArg('bench:snmp', 'ifaces', values.ifaces);
const ROUNDS = numberArg('bench:snmp', 'rounds', values.rounds);
const PARALLEL = numberArg('bench:snmp', 'parallel', values.parallel);
const AGENT_PROCS = Math.max(1, numberArg('bench:snmp', 'agent-procs', values['agent-procs']));
const INTERVAL_S = Math.max(5, numberArg('bench:snmp', 'interval', values.interval));
const WINDOW_INTERVALS = Math.max(1, numberArg('bench:snmp', 'window', values.window));
/** CPU-seconds per 1,000 interface polls. */
const per1000 = (cpuS: number, polls: number) => ((cpuS / polls) * 1000).toFixed(3);
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
/** The pause before the poll whose uplink rates are checked: the shortest `intervalS` a target can have. */
const RATE_CHECK_GAP_MS = 5_000;

const COLUMNS = POLLED_COLUMNS;

// The tables that hold the polled columns: IF-MIB::ifTable (ifEntry) and IF-MIB::ifXTable (ifXEntry).
const TABLES = ['1.3.6.1.2.1.2.2.1', '1.3.6.1.2.1.31.1.1.1'];

/** One `snmpbulkwalk` of a table; returns how many rows of the polled columns it printed. */
function bulkwalk(port: number, oid: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      'snmpbulkwalk',
      ['-v2c', '-c', 'public', '-Cr50', '-On', '-Oq', '-t', '5', '-r', '1', `127.0.0.1:${port}`, oid],
      { maxBuffer: 16 * 1024 * 1024 },
      (err, stdout) =>
        err
          ? reject(err)
          : resolve(
              stdout
                .split('\n')
                // the walk of the last table also ends with an "end of MIB view" line
                .filter(
                  (l) => COLUMNS.some((c) => l.startsWith(`.${c}.`)) && !l.includes('No more variables'),
                ).length,
            ),
    );
  });
}

// The simulated routers (bench/snmp-router.ts, a lean SNMPv2c responder) run in separate processes, so they
// do not share the poller's event loop.
const agents = forkRouterHosts(AGENT_PROCS);
const mosquitto = await new Mosquitto().start();
const spoolDir = benchTempDir('cfm-bench-spool-');
try {
  const ports = await startRouters(agents, AGENTS, IFACES);
  const targets = ports.map((port, i) => ({
    device: `rtr-${i}`,
    school: `33010600${String(i).padStart(2, '0')}`,
    address: '127.0.0.1',
    port,
    community: 'public',
    uplink: 1,
    timeoutMs: 5_000,
    maxRepetitions: 50,
  }));
  const poller = new Poller(
    pollerConfigSchema.parse({
      mqtt: { url: mosquitto.url, clientId: 'bench-poller' },
      targets,
      concurrency: 64,
    }),
    { log: silentLogger(), manual: true },
  );
  await poller.start();
  await poller.ready();
  await poller.pollAll(); // warm-up, and the seeding poll
  const inspector = values.profile || values['heap-profile'] ? new Session() : undefined;
  inspector?.connect();
  if (inspector && values.profile) {
    await inspector.post('Profiler.enable');
    await inspector.post('Profiler.start');
  }
  if (inspector && values['heap-profile']) {
    // Every 4 KiB allocated, objects collected since included: what the rounds allocate, not what they keep.
    await inspector.post('HeapProfiler.startSampling', {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }
  let t = performance.now();
  const cpu0 = process.cpuUsage();
  let last: Awaited<ReturnType<Poller['pollAll']>> = [];
  for (let r = 0; r < ROUNDS; r++) {
    last = await poller.pollAll();
    if (last.some((x) => x === undefined)) throw new Error('a poll failed');
  }
  const oursS = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const oursCpuS = (cpu.user + cpu.system) / 1e6;
  if (inspector && values.profile) {
    const { profile } = await inspector.post('Profiler.stop');
    writeFileSync(values.profile, JSON.stringify(profile));
  }
  if (inspector && values['heap-profile']) {
    const { profile } = await inspector.post('HeapProfiler.stopSampling');
    writeFileSync(values['heap-profile'], JSON.stringify(profile));
  }
  inspector?.disconnect();
  const ifacePolls = AGENTS * IFACES * ROUNDS;
  // The figures count only if the readings are right: every interface read, and the uplink's rate is the
  // 80 Mbit/s in / 20 Mbit/s out that the simulated routers' counters grow at (bench/snmp-router.ts).
  // The timed rounds run back to back, a few hundred ms apart, and a rate's interval is the delta of the
  // agent's sysUpTime, TimeTicks of 10 ms (RFC 2578 §7.1.8): over those rounds one tick alone is several per
  // cent of the rate, as it would be for any device. So the timed rounds are checked for complete readings
  // with both uplink rates, and the rates' values on one more, untimed poll RATE_CHECK_GAP_MS after the last
  // round: the shortest poll interval a target can have (`intervalS` ≥ 5), where a tick is at most 0.2 %.
  const readingError = (reading: (typeof last)[number], checkValues: boolean): string | undefined => {
    if (!reading) return 'a poll failed';
    const up = reading.ifaces.find((i) => i.uplink);
    const near = (x: number | null | undefined, want: number) =>
      x != null && (!checkValues || Math.abs(x - want) / want < 0.05);
    return reading.ifaces.length !== IFACES || !up || !near(up.inBps, 80e6) || !near(up.outBps, 20e6)
      ? `wrong reading: ${reading.ifaces.length} interfaces, uplink ${up?.inBps}/${up?.outBps} bit/s`
      : undefined;
  };
  const timedError = last.map((r) => readingError(r, false)).find((e) => e !== undefined);
  await new Promise((r) => setTimeout(r, RATE_CHECK_GAP_MS));
  const checked = await poller.pollAll();
  await poller.stop();
  if (timedError) throw new Error(`timed rounds: ${timedError}`);
  const rateError = checked.map((r) => readingError(r, true)).find((e) => e !== undefined);
  if (rateError) throw new Error(`${RATE_CHECK_GAP_MS / 1000} s after the timed rounds: ${rateError}`);

  // The C tools: a walk of each target's ifTable and ifXTable (all their columns, the polled ones counted),
  // PARALLEL processes at a time; one pass.
  const jobs = ports.flatMap((port) => TABLES.map((oid) => ({ port, oid })));
  let rows = 0;
  t = performance.now();
  const cCpu0 = reapedChildrenCpuSeconds();
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < jobs.length) {
        const j = jobs[next++]!;
        const n = await bulkwalk(j.port, j.oid);
        rows += n;
      }
    }),
  );
  const cS = (performance.now() - t) / 1000;
  const cCpuS = reapedChildrenCpuSeconds() - cCpu0;
  if (rows !== AGENTS * IFACES * COLUMNS.length) throw new Error(`snmpbulkwalk returned ${rows} rows`);

  console.log(
    `snmp bench: ${AGENTS} simulated routers × ${IFACES} interfaces (lean SNMPv2c responders in ${AGENT_PROCS} separate processes), ${COLUMNS.length} IF-MIB columns per interface`,
  );
  console.log(
    `our poller (GetBulk walk + rates + MQTT publish, ${ROUNDS} rounds): ${fmt(ifacePolls / oursS)} interface polls/s (target ≥ 5,000)`,
  );
  console.log(
    `  poller process CPU: ${oursCpuS.toFixed(1)} s of ${oursS.toFixed(1)} s wall (${fmt(ifacePolls / oursCpuS)} interface polls per CPU-second; uplink rates checked against the simulated traffic on a poll ${RATE_CHECK_GAP_MS / 1000} s later)`,
  );
  console.log(
    `C snmpbulkwalk (${PARALLEL} in parallel, two per target: ifTable and ifXTable): ${fmt((AGENTS * IFACES) / cS)} interface polls/s`,
  );
  console.log(`ratio ours/C: ${(ifacePolls / oursS / ((AGENTS * IFACES) / cS)).toFixed(2)} (target ≥ 1)`);
  console.log(
    `  CPU per 1,000 interface polls in this pass: ours ${per1000(oursCpuS, ifacePolls)} s, snmpbulkwalk processes ${per1000(cCpuS, AGENTS * IFACES)} s`,
  );

  if (!values['skip-peers']) await peersInTheSameRun(targets);
} finally {
  for (const a of agents) a.send('stop');
  rmSync(spoolDir, { recursive: true, force: true });
  await mosquitto.dispose();
}

/**
 * Part (2): our poller and the peers, all polling every target each INTERVAL_S, measured over the same window.
 */
async function peersInTheSameRun(targets: { device: string; port: number }[]): Promise<void> {
  const dir = benchTempDir('cfm-bench-peers-');
  const peers: Peer[] = [];
  const failed: { name: string; why: string }[] = [];
  const child = fork(new URL('./snmp-poller.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] });
  trackChild(child, 'bench poller', dir);
  try {
    const stats = () =>
      new Promise<{ ifacePolls: number; failures: number }>((resolve) => {
        child.once('message', (m: { ifacePolls: number; failures: number }) => resolve(m));
        child.send({ stats: true });
      });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`bench poller exited (${code})`)));
      child.send({
        config: {
          mqtt: { url: mosquitto.url, clientId: 'bench-poller-paced' },
          targets: targets.map((t) => ({ ...t, intervalS: INTERVAL_S })),
          concurrency: 64,
          spool: { dir: join(dir, 'spool') },
        },
        intervalMs: INTERVAL_S * 1000,
      });
    });
    let oursPolls = 0;
    peers.push({
      name: 'our poller',
      pid: child.pid!,
      ifacePolls: () => oursPolls,
      problems: () => [],
      stop: async () => undefined,
    });
    const refresh = async () => {
      const s = await stats();
      oursPolls = s.ifacePolls;
      if (s.failures > 0) throw new Error(`our poller: ${s.failures} polls failed`);
    };
    for (const [name, start] of [
      ['collectd', () => startCollectd({ targets, intervalS: INTERVAL_S, dir })],
      ['snmp_exporter', () => startExporter({ targets, intervalS: INTERVAL_S, maxRepetitions: 50, dir })],
    ] as const) {
      try {
        peers.push(await start());
      } catch (e) {
        failed.push({ name, why: (e as Error).message });
      }
    }
    // Warm-up: every poller has delivered a full round (and ours has seeded its rates) before the window opens.
    const round = AGENTS * IFACES;
    await waitFor(
      async () => {
        await refresh();
        return peers.every((p) => p.ifacePolls() >= 2 * round);
      },
      { timeoutMs: (3 * INTERVAL_S + 30) * 1000, intervalMs: 200, what: 'a warm-up round from every poller' },
    );
    await refresh();
    if (values.profile) child.send({ profile: 'start' });
    const before = peers.map((p) => ({ cpu: cpuSeconds(p.pid), polls: p.ifacePolls() }));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, WINDOW_INTERVALS * INTERVAL_S * 1000));
    await refresh();
    const after = peers.map((p) => ({ cpu: cpuSeconds(p.pid), polls: p.ifacePolls() }));
    const windowS = (performance.now() - t0) / 1000;
    if (values.profile) {
      await new Promise<void>((resolve) => {
        child.once('message', () => resolve());
        child.send({ profile: 'stop', file: `${values.profile}.paced.cpuprofile` });
      });
    }

    console.log(
      `peers in the same run: every router polled every ${INTERVAL_S} s by each, concurrently; CPU from /proc/<pid>/stat over the same ${windowS.toFixed(1)} s window (${WINDOW_INTERVALS} intervals); ${round.toLocaleString('en-US')} interface polls per round`,
    );
    const figure = new Map<string, number>();
    peers.forEach((p, i) => {
      const cpu = after[i]!.cpu - before[i]!.cpu;
      const polls = after[i]!.polls - before[i]!.polls;
      const problems = p.problems();
      figure.set(p.name, (cpu / polls) * 1000);
      console.log(
        `  ${p.name.padEnd(14)} ${per1000(cpu, polls)} CPU-s per 1,000 interface polls (${cpu.toFixed(2)} CPU-s, ${polls.toLocaleString('en-US')} interface polls = ${(polls / round).toFixed(2)} rounds)${problems.length ? `; problems: ${problems.join(' | ')}` : ''}`,
      );
    });
    for (const f of failed) console.log(`  ${f.name.padEnd(14)} not measured: ${f.why}`);
    const ours = figure.get('our poller')!;
    const ratio = (peer: string) => {
      const x = figure.get(peer);
      return x === undefined ? 'n/a (not measured)' : (ours / x).toFixed(2);
    };
    console.log(
      `ratio ours/collectd: ${ratio('collectd')} (target < 1); ours/snmp_exporter: ${ratio('snmp_exporter')}`,
    );
  } finally {
    for (const p of peers) await p.stop();
    if (child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.send('stop');
      });
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
