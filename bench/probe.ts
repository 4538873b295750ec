// npm run bench:probe [-- --targets 1600 --count 10 --period 1000 --gap 0.5 --cycles 2]
//
// The poller's probes at a city's scale: `--targets` addresses 127.1.x.y (every 127.0.0.0/8 address answers ICMP
// on loopback), probed in `--cycles` cycles by one poller — one fping per cycle (Debian's fping, count mode),
// every result published to a real Mosquitto through the poller's ReliablePublisher, as in production.
// Prints the CPU-seconds per 1,000 probes of our process and of fping (the children's CPU: /proc/self/stat
// cutime + cstime, which count a child once it has exited and been waited for), and the share of one core that
// probing that many schools every 60 s takes.
import { readFileSync, rmSync } from 'node:fs';
import { Poller, pollerConfigSchema } from '../agents/snmp/poller.js';
import { silentLogger } from '../common/log.js';
import { Mosquitto } from '../dev/mosquitto.js';
import { benchArgs, benchTempDir, numberArg } from './args.js';

const { values } = benchArgs('bench:probe', {
  options: {
    targets: { type: 'string', default: '1600' },
    count: { type: 'string', default: '10' },
    period: { type: 'string', default: '1000' },
    gap: { type: 'string', default: '0.5' },
    cycles: { type: 'string', default: '2' },
  },
});
const TARGETS = numberArg('bench:probe', 'targets', values.targets);
const COUNT = numberArg('bench:probe', 'count', values.count);
const PERIOD_MS = numberArg('bench:probe', 'period', values.period);
const GAP_MS = numberArg('bench:probe', 'gap', values.gap, 0);
const CYCLES = numberArg('bench:probe', 'cycles', values.cycles);

/** CPU seconds of this process's waited-for children (fping; Mosquitto is still running, so not in it). */
function childrenCpuS(): number {
  // /proc/[pid]/stat: fields after the command's closing parenthesis; cutime and cstime are fields 16 and 17,
  // in clock ticks (USER_HZ, 100 on Linux).
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[16 - 3]) + Number(f[17 - 3])) / 100;
}

const mosquitto = await new Mosquitto().start();
const spool = benchTempDir('cfm-bench-probe-');
const targets = Array.from({ length: TARGETS }, (_, i) => ({
  school: String(3_301_060_000 + i),
  device: `gw-${i}`,
  address: `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
}));
const poller = new Poller(
  pollerConfigSchema.parse({
    mqtt: { url: mosquitto.url, clientId: 'bench-probe' },
    spool: { dir: spool },
    probes: { enabled: true, count: COUNT, periodMs: PERIOD_MS, timeoutMs: 1000, gapMs: GAP_MS, targets },
  }),
  { log: silentLogger(), manual: true },
);
await poller.start();
await poller.ready();

let probes = 0;
let received = 0;
const wall0 = performance.now();
const cpu0 = process.cpuUsage();
const child0 = childrenCpuS();
for (let c = 0; c < CYCLES; c++) {
  for (const r of await poller.probeAll()) {
    probes += r.sent;
    received += r.received;
  }
}
const cpu = process.cpuUsage(cpu0);
const fpingS = childrenCpuS() - child0;
const wallS = (performance.now() - wall0) / 1000;
const oursS = (cpu.user + cpu.system) / 1e6;
await poller.stop();
const st = poller.stats();
await mosquitto.dispose();
rmSync(spool, { recursive: true, force: true });

const per1k = (s: number) => ((s / probes) * 1000).toFixed(4);
const cycleS = (oursS + fpingS) / CYCLES;
console.log(
  `probe: ${TARGETS} targets × ${COUNT} probes × ${CYCLES} cycles = ${probes} probes, ${received} answered, in ${wallS.toFixed(1)} s (period ${PERIOD_MS} ms, gap ${GAP_MS} ms); published ${st.published} results, badLines ${st.badLines}, fpingFailures ${st.fpingFailures}`,
);
console.log(`ours:  ${per1k(oursS)} CPU-s per 1,000 probes (${oursS.toFixed(2)} CPU-s)`);
console.log(`fping: ${per1k(fpingS)} CPU-s per 1,000 probes (${fpingS.toFixed(2)} CPU-s)`);
console.log(
  `${TARGETS} schools every 60 s, ${COUNT} probes each: ${((cycleS / 60) * 100).toFixed(2)} % of one core (ours ${((oursS / CYCLES / 60) * 100).toFixed(2)} %, fping ${((fpingS / CYCLES / 60) * 100).toFixed(2)} %)`,
);
