import { createServer } from 'node:http';
import type { Alert } from '../../alerting/engine.js';

/** An alert as the engine holds it: a firing uplink outage of school A, with what a test changes. */
export const alertOf = (over: Partial<Alert> = {}): Alert => ({
  id: 'uplink_down-5e0c1f2a3b4d5e6f7a8b',
  key: 'uplink_down|A|gw|',
  rule: 'uplink_down',
  severity: 'critical',
  school: 'A',
  device: 'gw',
  subject: null,
  state: 'firing',
  raw: true,
  startedAtMs: Date.parse('2026-10-08T08:06:04+08:00'),
  pendingSinceMs: null,
  clearSinceMs: null,
  firingAtMs: null,
  resolvedAtMs: null,
  notifiedAtMs: null,
  owedFiring: false,
  ackedAtMs: null,
  ackedBy: null,
  changes: [],
  flapping: false,
  inhibitedBy: null,
  affected: ['pn-01', 'pn-02'],
  message: 'SNMP 10.33.12.1:161 无应答',
  details: {},
  ...over,
});

/** A generic-webhook receiver on loopback: every notification it got (parsed), answered 200. */
export async function webhookReceiver<T = unknown>(): Promise<{
  url: string;
  got: T[];
  close(): Promise<void>;
}> {
  const got: T[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      got.push(JSON.parse(body) as T);
      res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`,
    got,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
