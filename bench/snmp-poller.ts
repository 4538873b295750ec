// Child process of bench/snmp.ts and bench/poller.ts: our poller on its production schedule (every target once
// per interval, first polls spread over it; probes too when configured), in a process of its own so its CPU — and
// its reaped fping children's — is read from /proc/<pid>/stat like the peers'.
// IPC: parent sends {config, intervalMs?, solo?}; with `solo` the child first measures each kind alone in manual
// mode (a seeding poll, one timed pollAll(), one timed probeAll()) and answers {solo}; then it answers 'ready'
// once connected; then {stats: true} → {ifacePolls, polls, failures, and the prober's counters};
// {profile: 'start'} / {profile: 'stop', file} → 'profiled' (a V8 CPU profile of the window, bench:snmp
// --profile); 'stop' ends it.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { Poller, type PollerConfig, pollerConfigSchema } from '../agents/snmp/poller.js';
import { silentLogger } from '../common/log.js';
import { reapedChildrenCpuSeconds } from './snmp-peers.js';

type Message =
  | { config: unknown; intervalMs?: number; solo?: boolean }
  | { stats: true }
  | { profile: 'start' }
  | { profile: 'stop'; file: string }
  | 'stop';

/** What one round of each kind costs alone (bench/poller.ts). */
export interface SoloCost {
  pollCpuS: number;
  ifacePolls: number;
  failedPolls: number;
  probeCpuS: number;
  fpingCpuS: number;
  probes: number;
  answered: number;
}

const ownCpuS = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function soloCost(config: PollerConfig): Promise<SoloCost> {
  const solo = new Poller(config, { log: silentLogger(), manual: true });
  await solo.start();
  await solo.ready();
  await solo.pollAll(); // the seeding poll: rates need two readings
  let cpu0 = ownCpuS();
  const readings = await solo.pollAll();
  const pollCpuS = ownCpuS() - cpu0;
  cpu0 = ownCpuS();
  const child0 = reapedChildrenCpuSeconds();
  const results = await solo.probeAll();
  const probeCpuS = ownCpuS() - cpu0;
  const fpingCpuS = reapedChildrenCpuSeconds() - child0;
  await solo.stop();
  return {
    pollCpuS,
    ifacePolls: readings.reduce((n, r) => n + (r?.ifaces.length ?? 0), 0),
    failedPolls: readings.filter((r) => r === undefined).length,
    probeCpuS,
    fpingCpuS,
    probes: results.reduce((n, r) => n + r.sent, 0),
    answered: results.reduce((n, r) => n + r.received, 0),
  };
}

let poller: Poller | undefined;
let inspector: Session | undefined;
process.on('message', async (m: Message) => {
  if (m === 'stop') {
    await poller?.stop();
    process.exit(0);
  }
  if ('stats' in m) {
    const s = poller!.stats();
    process.send!({
      ifacePolls: s.ifacePolls,
      polls: s.polls,
      failures: s.failures,
      icmpResults: s.icmpResults,
      probeCycles: s.probeCycles,
      skippedCycles: s.skippedCycles,
      fpingFailures: s.fpingFailures,
      missingResults: s.missingResults,
      badLines: s.badLines,
    });
    return;
  }
  if ('profile' in m) {
    if (m.profile === 'start') {
      inspector = new Session();
      inspector.connect();
      await inspector.post('Profiler.enable');
      await inspector.post('Profiler.start');
    } else if (inspector) {
      const { profile } = await inspector.post('Profiler.stop');
      writeFileSync(m.file, JSON.stringify(profile));
      inspector.disconnect();
      process.send!('profiled');
    }
    return;
  }
  const config = pollerConfigSchema.parse(m.config);
  if (m.solo) process.send!({ solo: await soloCost(config) });
  poller = new Poller(config, { log: silentLogger(), intervalMs: m.intervalMs });
  await poller.start();
  await poller.ready();
  process.send!('ready');
});
