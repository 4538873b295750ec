// Child process of bench/snmp.ts: hosts the simulated routers, so they do not share the poller's event loop.
// IPC: parent sends {count, ifaces, first}; child answers {ports}; parent sends 'stop'.
import { SimRouter } from './snmp-router.js';

const routers: SimRouter[] = [];
process.on('message', async (m: { count: number; ifaces: number; first: number } | 'stop') => {
  if (m === 'stop') {
    await Promise.all(routers.map((r) => r.stop()));
    process.exit(0);
  }
  for (let t = 0; t < m.count; t++)
    routers.push(await new SimRouter({ ifaces: m.ifaces, seed: m.first + t }).start());
  process.send!({ ports: routers.map((r) => r.port) });
});
