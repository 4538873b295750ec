import { EXAMPLES } from '../../contracts/examples.js';
import type { TopicPayloads } from '../../contracts/messages.js';

/**
 * Valid messages for tests, built from the contract's own examples (contracts/examples.ts), so that they follow
 * the contract as it changes: each sets only what a test is about, dated now.
 */

/** A status: `state`, with the reason that goes with it (a birth online, the last will offline). */
export function statusOf(
  state: 'online' | 'offline',
  extra: Partial<TopicPayloads['status']> = {},
): TopicPayloads['status'] {
  return {
    ...EXAMPLES.status,
    ts: Date.now(),
    state,
    reason: state === 'online' ? 'birth' : 'will',
    ...extra,
  };
}

/** A router's poll of its uplink alone, taking in `inBps` and sending 1 Mbit/s; `entry` changes the interface. */
export function uplinkOf(
  inBps: number,
  entry: Partial<TopicPayloads['iface']['ifaces'][number]> = {},
): TopicPayloads['iface'] {
  return {
    ...EXAMPLES.iface,
    ts: Date.now(),
    seq: 1,
    ifaces: [{ ...EXAMPLES.iface.ifaces[0]!, uplink: true, inBps, outBps: 1e6, ...entry }],
  };
}
