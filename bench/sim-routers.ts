// The simulated routers of bench/snmp.ts and bench/poller.ts: lean SNMPv2c responders (bench/snmp-router.ts)
// hosted by child processes (bench/snmp-agents.ts), so they do not share the poller's event loop.
import { type ChildProcess, fork } from 'node:child_process';

/** `procs` host processes; send each 'stop' when done. */
export function forkRouterHosts(procs: number): ChildProcess[] {
  return Array.from({ length: procs }, () =>
    fork(new URL('./snmp-agents.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] }),
  );
}

/** Starts `count` routers of `ifaces` interfaces, spread evenly over the hosts; their UDP ports, in order. */
export async function startRouters(hosts: ChildProcess[], count: number, ifaces: number): Promise<number[]> {
  const per = (j: number) => Math.floor(count / hosts.length) + (j < count % hosts.length ? 1 : 0);
  const ports = await Promise.all(
    hosts.map(
      (a, k) =>
        new Promise<number[]>((resolve) => {
          a.once('message', (m: { ports: number[] }) => resolve(m.ports));
          let first = 0;
          for (let j = 0; j < k; j++) first += per(j);
          a.send({ count: per(k), ifaces, first });
        }),
    ),
  );
  return ports.flat();
}
