import { describe, expect, it } from 'vitest';
import { addressKey, FailureLimiter } from '../../common/failure-limit.js';

/** The per-address failure limiter of the API and the broker: its bound on memory and on work per failure. */
describe('FailureLimiter', () => {
  it('limits a key after max failures until its window ends', () => {
    let now = 0;
    const l = new FailureLimiter({ max: 3, windowMs: 1_000 }, () => now);
    expect([l.fail('a'), l.fail('a'), l.fail('a')]).toEqual([false, false, true]); // true once: log once
    expect(l.limitedForMs('a')).toBe(1_000);
    expect(l.limitedForMs('b')).toBe(0);
    now = 1_000;
    expect(l.limitedForMs('a')).toBe(0);
    expect(l.size).toBe(0);
  });

  it('tracks at most maxKeys addresses: ended windows go first, then the oldest live one', () => {
    let now = 0;
    const l = new FailureLimiter({ max: 2, windowMs: 1_000, maxKeys: 1_000 }, () => now);
    for (let i = 0; i < 1_000; i++) l.fail(`old-${i}`);
    now = 500;
    for (let i = 0; i < 10; i++) l.fail(`mid-${i}`); // full of live windows: the oldest make room
    expect(l.size).toBe(1_000);
    expect(l.limitedForMs('mid-9')).toBe(0);
    now = 1_200; // the 'old' windows have ended, the 'mid' ones have not
    l.fail('new');
    l.fail('new');
    expect(l.size).toBeLessThanOrEqual(1_000);
    expect(l.limitedForMs('new')).toBe(1_000);
    l.fail('mid-9');
    expect(l.limitedForMs('mid-9')).toBe(300); // its window (500 … 1,500) kept its count
  });

  it('a new address costs a step or two when the map is full of live windows (no scan per failure)', () => {
    const now = 0;
    const l = new FailureLimiter({ max: 30, windowMs: 60_000, maxKeys: 100_000 }, () => now);
    for (let i = 0; i < 100_000; i++) l.fail(`a${i}`);
    expect(l.sweepSteps).toBe(0);
    for (let i = 0; i < 100_000; i++) l.fail(`b${i}`);
    // A scan per failure would be 10^10 steps.
    expect(l.sweepSteps).toBeLessThanOrEqual(2 * 100_000);
    expect(l.size).toBe(100_000);
    // The newest are kept with their counts: b0's 30th failure limits it.
    for (let i = 0; i < 29; i++) l.fail('b0');
    expect(l.limitedForMs('b0')).toBe(60_000);
  });

  it('keys IPv6 addresses by their /64 and IPv4-mapped addresses as IPv4', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:bbbb::2')).toBe('2001:db8:1:2::/64');
    expect(addressKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(addressKey(undefined)).toBe('unknown');
  });
});
