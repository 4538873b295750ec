import pino from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Prober, probesConfigSchema } from '../../agents/snmp/probe.js';
import type { ProbeResult } from '../../contracts/messages.js';
import { SnmpSim } from '../../dev/snmp-sim.js';

const log = pino({ level: 'silent' });

/**
 * The simulated router's management port (`managementTcp`), as the quickstart's TCP probes see it: answered
 * while the router runs, refused while it is stopped (a fibre cut: every probe lost), the same port again after
 * a restart — probed by the poller's own prober.
 */
describe('SnmpSim managementTcp', () => {
  it('answers TCP probes while running, refuses them while stopped, reopens the same port on restart', async () => {
    const sim = await new SnmpSim({ ifaces: [], managementTcp: true }).start();
    onTestFinished(() => sim.stop());
    const port = sim.tcpPort;
    expect(port).toBeGreaterThan(0);
    const config = probesConfigSchema.parse({ enabled: true, count: 3, periodMs: 20, timeoutMs: 500 });
    const cycle = async (): Promise<ProbeResult> => {
      const out: ProbeResult[] = [];
      const p = new Prober(
        config,
        [{ school: 's', device: 'gw', address: '127.0.0.1', method: 'tcp', port }],
        {
          log,
          publish: (_t, r) => out.push(r),
        },
      );
      await p.cycle();
      await p.stop();
      expect(out).toHaveLength(1);
      return out[0]!;
    };
    expect(await cycle()).toMatchObject({ method: 'tcp', port, sent: 3, received: 3 });
    await sim.stop();
    expect(await cycle()).toMatchObject({ sent: 3, received: 0, rttMs: null });
    await sim.start();
    expect(sim.tcpPort).toBe(port);
    expect(await cycle()).toMatchObject({ sent: 3, received: 3 });
    // Without the option there is no TCP port.
    const plain = await new SnmpSim({ ifaces: [] }).start();
    onTestFinished(() => plain.stop());
    expect(plain.tcpPort).toBe(0);
  });
});
