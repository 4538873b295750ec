import type { Telemetry } from '../contracts/messages.js';
import { buildTopic } from '../contracts/topics.js';

/** Realistic classroom telemetry for benchmarks: device i % devices, ten seconds apart per device. */
export function makeTelemetry(i: number, devices: number, t0: number): Telemetry {
  const d = i % devices;
  const round = Math.floor(i / devices);
  const on = (d + round) % 3 !== 0;
  return {
    v: 1,
    ts: t0 + round * 10_000 + (d % 10_000),
    seq: round,
    kind: 'panel',
    classroom: `c${String(d % 40).padStart(2, '0')}`,
    host: {
      uptimeS: 3_600 + round * 10,
      cpuPct: (d * 7 + round) % 100,
      memUsedPct: 40 + (d % 50),
      memTotalBytes: 8_589_934_592,
      nics: [
        {
          name: 'Ethernet',
          rxBytes: String(1_000_000_000 + d * 1_000 + round * 250_000),
          txBytes: String(90_000_000 + round * 12_000),
          rxBps: 200_000 + (d % 1_000) * 100,
          txBps: 9_600,
        },
      ],
    },
    display: {
      source: 'pjlink',
      power: on ? 'on' : 'off',
      ...(on ? { input: '31', temperatureC: 40.5 } : {}),
      touchOk: true,
      lampHours: 1_000 + d,
      errors: { fan: 'ok', lamp: 'ok', temperature: 'ok', cover: 'ok', filter: 'ok', other: 'ok' },
    },
    inUse: on,
  };
}

export function topicFor(i: number, devices: number): string {
  const d = i % devices;
  return buildTopic({
    school: `31330${String(Math.floor(d / 40)).padStart(5, '0')}`,
    device: `ops-${d}`,
    channel: 'telemetry',
  });
}
