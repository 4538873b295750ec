// npm run bench:snmp [-- --agents 100 --ifaces 48 --rounds 5 --parallel 8]
//
// Many simulated routers (bench/snmp-router.ts, 48 interfaces each, in separate processes) on loopback,
// polled in one run by (1) our poller — the same ten IF-MIB columns it reads in production, rates computed,
// readings published to a real Mosquitto — and (2) the C net-snmp tools: `snmpbulkwalk` of each target's ifTable
// and ifXTable, `--parallel` processes at a time. Prints the interface polls per second of each and their ratio.
// Target: ≥ 5,000 interface polls/s, and at least the C tools' rate.
import { execFile, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { POLLED_COLUMNS, Poller, pollerConfigSchema } from '../agents/snmp/poller.js';
import { silentLogger } from '../common/log.js';
import { Mosquitto } from '../dev/mosquitto.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '100' },
    ifaces: { type: 'string', default: '48' },
    rounds: { type: 'string', default: '5' },
    parallel: { type: 'string', default: '8' },
    'agent-procs': { type: 'string', default: '2' },
  },
});
const AGENTS = Number(values.agents);
const IFACES = Number(values.ifaces);
const ROUNDS = Number(values.rounds);
const PARALLEL = Number(values.parallel);
const AGENT_PROCS = Math.max(1, Number(values['agent-procs']));
const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

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
const agents = Array.from({ length: AGENT_PROCS }, () =>
  fork(new URL('./snmp-agents.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] }),
);
const mosquitto = await new Mosquitto().start();
const spoolDir = mkdtempSync(join(tmpdir(), 'cfm-bench-spool-'));
try {
  const ports = (
    await Promise.all(
      agents.map(
        (a, k) =>
          new Promise<number[]>((resolve) => {
            a.once('message', (m: { ports: number[] }) => resolve(m.ports));
            const per = (j: number) => Math.floor(AGENTS / AGENT_PROCS) + (j < AGENTS % AGENT_PROCS ? 1 : 0);
            let first = 0;
            for (let j = 0; j < k; j++) first += per(j);
            a.send({ count: per(k), ifaces: IFACES, first });
          }),
      ),
    )
  ).flat();
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
  const ifacePolls = AGENTS * IFACES * ROUNDS;
  await poller.stop();
  // The figures count only if the readings are right: every interface read, and the uplink's rate is the
  // 80 Mbit/s in / 20 Mbit/s out that the simulated routers' counters grow at (bench/snmp-router.ts).
  for (const reading of last) {
    const up = reading!.ifaces.find((i) => i.uplink);
    const near = (x: number | null | undefined, want: number) =>
      x != null && Math.abs(x - want) / want < 0.05;
    if (reading!.ifaces.length !== IFACES || !up || !near(up.inBps, 80e6) || !near(up.outBps, 20e6))
      throw new Error(
        `wrong reading: ${reading!.ifaces.length} interfaces, uplink ${up?.inBps}/${up?.outBps} bit/s`,
      );
  }

  // The C tools: a walk of each target's ifTable and ifXTable (all their columns, the polled ones counted),
  // PARALLEL processes at a time; one pass.
  const jobs = ports.flatMap((port) => TABLES.map((oid) => ({ port, oid })));
  let rows = 0;
  t = performance.now();
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
  if (rows !== AGENTS * IFACES * COLUMNS.length) throw new Error(`snmpbulkwalk returned ${rows} rows`);

  console.log(
    `snmp bench: ${AGENTS} simulated routers × ${IFACES} interfaces (lean SNMPv2c responders in ${AGENT_PROCS} separate processes), ${COLUMNS.length} IF-MIB columns per interface`,
  );
  console.log(
    `our poller (GetBulk walk + rates + MQTT publish, ${ROUNDS} rounds): ${fmt(ifacePolls / oursS)} interface polls/s (target ≥ 5,000)`,
  );
  console.log(
    `  poller process CPU: ${oursCpuS.toFixed(1)} s of ${oursS.toFixed(1)} s wall (${fmt(ifacePolls / oursCpuS)} interface polls per CPU-second; uplink rates checked against the simulated traffic)`,
  );
  console.log(
    `C snmpbulkwalk (${PARALLEL} in parallel, two per target: ifTable and ifXTable): ${fmt((AGENTS * IFACES) / cS)} interface polls/s`,
  );
  console.log(`ratio ours/C: ${(ifacePolls / oursS / ((AGENTS * IFACES) / cS)).toFixed(2)} (target ≥ 1)`);
} finally {
  for (const a of agents) a.send('stop');
  rmSync(spoolDir, { recursive: true, force: true });
  await mosquitto.dispose();
}
