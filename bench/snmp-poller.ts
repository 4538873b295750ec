// Child process of bench/snmp.ts: our poller on its production schedule (every target once per interval, first
// polls spread over it), in a process of its own so its CPU is read from /proc/<pid>/stat like the peers'.
// IPC: parent sends {config, intervalMs}; child answers 'ready' once connected; then {stats: true} → {ifacePolls,
// polls, failures}; {profile: 'start'} / {profile: 'stop', file} → 'profiled' (a V8 CPU profile of the window,
// bench:snmp --profile); 'stop' ends it.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { Poller, pollerConfigSchema } from '../agents/snmp/poller.js';
import { silentLogger } from '../common/log.js';

type Message =
  | { config: unknown; intervalMs: number }
  | { stats: true }
  | { profile: 'start' }
  | { profile: 'stop'; file: string }
  | 'stop';

let poller: Poller | undefined;
let inspector: Session | undefined;
process.on('message', async (m: Message) => {
  if (m === 'stop') {
    await poller?.stop();
    process.exit(0);
  }
  if ('stats' in m) {
    const s = poller!.stats();
    process.send!({ ifacePolls: s.ifacePolls, polls: s.polls, failures: s.failures });
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
  poller = new Poller(pollerConfigSchema.parse(m.config), { log: silentLogger(), intervalMs: m.intervalMs });
  await poller.start();
  await poller.ready();
  process.send!('ready');
});
