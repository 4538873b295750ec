// Child process of bench/snmp.ts: our poller on its production schedule (every target once per interval, first
// polls spread over it), in a process of its own so its CPU is read from /proc/<pid>/stat like the peers'.
// IPC: parent sends {config, intervalMs}; child answers 'ready' once connected; then {stats: true} → {ifacePolls,
// polls, failures}; 'stop' ends it.
import { Poller, pollerConfigSchema } from '../agents/snmp/poller.js';
import { silentLogger } from '../common/log.js';

let poller: Poller | undefined;
process.on('message', async (m: { config: unknown; intervalMs: number } | { stats: true } | 'stop') => {
  if (m === 'stop') {
    await poller?.stop();
    process.exit(0);
  }
  if ('stats' in m) {
    const s = poller!.stats();
    process.send!({ ifacePolls: s.ifacePolls, polls: s.polls, failures: s.failures });
    return;
  }
  poller = new Poller(pollerConfigSchema.parse(m.config), { log: silentLogger(), intervalMs: m.intervalMs });
  await poller.start();
  await poller.ready();
  process.send!('ready');
});
