// Child process of bench/snmp.ts: hosts the simulated routers, so they do not share the poller's event loop.
// IPC: parent sends {count, ifaces}; child answers {ports}; parent sends 'stop'.
import { type SimIface, SnmpSim } from '../common/dev/snmp-sim.js';

const sims: SnmpSim[] = [];
process.on('message', async (m: { count: number; ifaces: number } | 'stop') => {
  if (m === 'stop') {
    await Promise.all(sims.map((s) => s.stop()));
    process.exit(0);
  }
  for (let t = 0; t < m.count; t++) {
    const ifaces: SimIface[] = Array.from({ length: m.ifaces }, (_, i) => ({
      index: i + 1,
      name: `GigabitEthernet0/0/${i + 1}`,
      alias: i === 0 ? 'uplink' : `access ${i}`,
      highSpeedMbps: 1000,
      operStatus: 1,
      inOctets: BigInt(1_000_000 * (t + 1) + i),
      outOctets: BigInt(2_000_000 * (t + 1) + i),
    }));
    sims.push(await new SnmpSim({ ifaces }).start());
  }
  process.send!({ ports: sims.map((s) => s.port) });
});
