import type { TopicPayloads } from './messages.js';
import type { Channel, TopicParts } from './topics.js';

/**
 * One valid example per channel. A test validates each against its schema, and the generated topic map
 * (`docs/topics.md`) shows them, so documentation can never drift from what the code accepts.
 * The school id is a 10-digit 学校标识码; the region path is province/city/county administrative codes.
 */
const ts = 1_788_000_000_000; // 2026-08-29T10:40:00Z

export const EXAMPLE_TOPICS: { [C in Channel]: TopicParts & { channel: C } } = {
  status: { school: '3133001234', device: 'c0701-ops', channel: 'status' },
  telemetry: { school: '3133001234', device: 'c0701-ops', channel: 'telemetry' },
  iface: { school: '3133001234', device: 'gw-01', channel: 'iface' },
  event: { school: '3133001234', device: 'c0701-ops', channel: 'event' },
  probe: { school: '3133001234', device: 'gw-01', channel: 'probe' },
};

export const EXAMPLES: TopicPayloads = {
  status: {
    v: 1,
    ts,
    state: 'online',
    reason: 'birth',
    kind: 'panel',
    classroom: 'c0701',
    region: '330000/330100/330106',
    agent: { name: 'cfm-agent', version: '0.1.0' },
    info: {
      hostname: 'OPS-0701',
      os: 'Windows 10 IoT Enterprise',
      model: 'Seewo F86EA',
      serial: 'SW86A2303117',
    },
    heartbeatS: 10,
  },
  telemetry: {
    v: 2,
    ts,
    seq: 4211,
    kind: 'panel',
    classroom: 'c0701',
    host: {
      uptimeS: 13_530,
      cpuPct: 17.5,
      memUsedPct: 61.2,
      memTotalBytes: 8_589_934_592,
      nics: [
        {
          name: 'Ethernet',
          rxBytes: '18446744073709551000',
          txBytes: '912345678',
          rxBps: 2_150_000,
          txBps: 96_000,
        },
      ],
    },
    display: {
      source: 'pjlink',
      power: 'on',
      input: '31',
      touchOk: true,
      temperatureC: 41.5,
      lampHours: 1_873,
      errors: { fan: 'ok', lamp: 'ok', temperature: 'ok', cover: 'ok', filter: 'warning', other: 'ok' },
    },
    activity: {
      source: 'windows',
      idleS: 42,
      foreground: 'EasiNote.exe',
      screenOn: true,
    },
  },
  iface: {
    v: 1,
    ts,
    seq: 88,
    kind: 'router',
    sysUpTimeTicks: 812_345_600,
    pollMs: 42,
    ifaces: [
      {
        index: 1,
        name: 'GigabitEthernet0/0/1',
        alias: 'uplink to 城域网',
        uplink: true,
        speedMbps: 1000,
        operStatus: 'up',
        counterBits: 64,
        inOctets: '987654321012',
        outOctets: '123456789012',
        inBps: 312_500_000,
        outBps: 48_000_000,
        inErrors: '0',
        outErrors: '0',
        inDiscards: '12',
      },
    ],
  },
  event: {
    v: 1,
    ts,
    type: 'fault',
    severity: 'warning',
    kind: 'projector',
    subject: 'lamp',
    message: '投影机灯泡使用时间超过 3000 小时',
    details: { lampHours: 3012, limitHours: 3000 },
  },
  probe: {
    v: 1,
    ts,
    kind: 'router',
    method: 'icmp',
    sent: 20,
    received: 19,
    rttMs: { min: 3.1, avg: 4.6, max: 11.2 },
    jitterMs: 1.4,
    periodMs: 1000,
  },
};
