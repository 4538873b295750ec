import { describe, expect, it } from 'vitest';
import {
  type CounterSample,
  type CounterValue,
  counterWrapMs,
  type DeviceSample,
  type IfaceRate,
  parseCounter,
  RateTracker,
} from '../../../agents/snmp/rates.js';

// Pure engine: no SNMP agent is needed, the samples are what the poller would hand over.

const TWO32 = 2n ** 32n;
const TWO64 = 2n ** 64n;

type Iface = [number, CounterSample];

function poll(sysUpTimeTicks: number | undefined, atMs: number, ...ifaces: Iface[]): DeviceSample {
  return { sysUpTimeTicks, atMs, ifaces: new Map(ifaces) };
}
/** ifHCInOctets/ifHCOutOctets (Counter64). */
function hc(
  index: number,
  inOctets: CounterValue,
  outOctets: CounterValue,
  extra: Partial<CounterSample> = {},
): Iface {
  return [index, { inOctets, outOctets, bits: 64, ...extra }];
}
/** ifInOctets/ifOutOctets (Counter32). */
function c32(
  index: number,
  inOctets: CounterValue,
  outOctets: CounterValue,
  extra: Partial<CounterSample> = {},
): Iface {
  return [index, { inOctets, outOctets, bits: 32, ...extra }];
}
const none = (why: IfaceRate['why']): IfaceRate => ({ inBps: null, outBps: null, why });

describe('RateTracker: seeding and steady traffic', () => {
  it('the first poll only seeds', () => {
    const t = new RateTracker();
    expect(t.update(poll(100_000, 0, hc(1, 1_000n, 2_000n), c32(2, 5, 6)))).toEqual({
      rates: new Map([
        [1, none('first')],
        [2, none('first')],
      ]),
      rebooted: false,
      overSpeed: 0,
      intervalMs: null,
      intervalFrom: null,
    });
  });

  it('steady 64-bit traffic: octets × 8 / seconds over the sysUpTime interval', () => {
    const t = new RateTracker();
    t.update(poll(100_000, 0, hc(1, 1_000_000n, 5_000_000n)));
    // +6,000 ticks = 60 s. in: +7,500,000 octets × 8 / 60 s = 1,000,000 bit/s; out: +750,000 × 8 / 60 = 100,000.
    const r2 = t.update(poll(106_000, 60_000, hc(1, 8_500_000n, 5_750_000n)));
    expect(r2.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 100_000 });
    expect(r2).toMatchObject({
      rebooted: false,
      overSpeed: 0,
      intervalMs: 60_000,
      intervalFrom: 'sysUpTime',
    });
    // in: +15,000,000 × 8 / 60 = 2,000,000; out unchanged: 0.
    const r3 = t.update(poll(112_000, 120_000, hc(1, 23_500_000n, 5_750_000n)));
    expect(r3.rates.get(1)).toEqual({ inBps: 2_000_000, outBps: 0 });
  });
});

describe('RateTracker: counter wraps (RFC 2578 §7.1.6, §7.1.10)', () => {
  it('Counter32 wraps at 2^32: prev 2^32 − 1000, now 500 over 10 s is 1500 octets', () => {
    const t = new RateTracker();
    t.update(poll(500_000, 0, c32(1, TWO32 - 1000n, 10_000n)));
    // +1,000 ticks = 10 s. in: (2^32 − (2^32 − 1000)) + 500 = 1500 octets → 1500 × 8 / 10 = 1200 bit/s.
    // out: 22,500 − 10,000 = 12,500 octets → 12,500 × 8 / 10 = 10,000 bit/s.
    const r = t.update(poll(501_000, 10_000, c32(1, 500n, 22_500n)));
    expect(r.rates.get(1)).toEqual({ inBps: 1200, outBps: 10_000 });
  });

  it('Counter64 wraps at 2^64, and bigint keeps deltas above 2^53 exact', () => {
    const t = new RateTracker();
    expect(BigInt('18446744073709550616')).toBe(TWO64 - 1000n);
    t.update(poll(500_000, 0, hc(1, '18446744073709550616', 2n ** 53n + 1n)));
    // +1,000 ticks = 10 s. in: 1000 to the wrap + 500 = 1500 octets → 1200 bit/s.
    // out: (2^53 + 3) − (2^53 + 1) = 2 octets → 2 × 8 / 10 = 1.6 bit/s. With numbers it would be
    // Number(2^53 + 3) − Number(2^53 + 1) = (2^53 + 4) − 2^53 = 4 octets → 3.2 bit/s.
    expect(Number(2n ** 53n + 3n) - Number(2n ** 53n + 1n)).toBe(4);
    const r = t.update(poll(501_000, 10_000, hc(1, 500n, 2n ** 53n + 3n)));
    expect(r.rates.get(1)).toEqual({ inBps: 1200, outBps: 1.6 });
  });

  it('a Counter64 going backwards is an unannounced reset, not a 2^64 wrap (no spike, even without a speed)', () => {
    const t = new RateTracker();
    t.update(poll(500_000, 0, hc(1, 5_000_000_000n, 0n), hc(2, 5_000_000_000n, 0n, { speedMbps: 1000 })));
    // Modular delta (1000 − 5e9) mod 2^64 ≈ 1.8e19 octets ≥ 2^63: would read as 1.5e19 bit/s.
    const r = t.update(poll(506_000, 60_000, hc(1, 1_000n, 0n), hc(2, 1_000n, 0n, { speedMbps: 1000 })));
    expect(r.rates.get(1)).toEqual(none('counter_backwards'));
    expect(r.rates.get(2)).toEqual(none('counter_backwards'));
    expect(r.overSpeed).toBe(0);
    // Re-based on the reset value: +75,000 × 8 / 60 = 10,000 bit/s.
    const r3 = t.update(poll(512_000, 120_000, hc(1, 76_000n, 0n)));
    expect(r3.rates.get(1)).toEqual({ inBps: 10_000, outBps: 0 });
  });
});

describe('RateTracker: reboots and discontinuities', () => {
  it('sysUpTime going back is a reboot: no rate, rebooted, and the next poll has a rate again', () => {
    const t = new RateTracker();
    t.update(poll(5_000_000, 0, hc(1, 9_000_000n, 9_000_000n)));
    // 60 s later the device reports 3,000 ticks (up 30 s): it rebooted and its counters restarted near 0.
    const r2 = t.update(poll(3_000, 60_000, hc(1, 1_000n, 1_000n), hc(2, 0n, 0n)));
    expect(r2).toEqual({
      rates: new Map([
        [1, none('reset')],
        [2, none('first')], // appeared with the reboot: seeds like any new interface
      ]),
      rebooted: true,
      overSpeed: 0,
      intervalMs: null,
      intervalFrom: null,
    });
    // +6,000 ticks = 60 s. in: 76,000 − 1,000 = 75,000 × 8 / 60 = 10,000 bit/s.
    const r3 = t.update(poll(9_000, 120_000, hc(1, 76_000n, 1_000n), hc(2, 7_500n, 0n)));
    expect(r3.rebooted).toBe(false);
    expect(r3.rates.get(1)).toEqual({ inBps: 10_000, outBps: 0 });
    expect(r3.rates.get(2)).toEqual({ inBps: 1_000, outBps: 0 }); // 7,500 × 8 / 60
  });

  it('sysUpTime that advanced but is shorter than the time since the last poll is a reboot too', () => {
    const t = new RateTracker();
    // Up 10 s (1,000 ticks); 60 s later up 20 s: it restarted in between. As a Counter32 "wrap" the counter
    // drop 4,000,000 → 100 would read (2^32 − 4,000,000 + 100) × 8 / 10 s ≈ 3.4 Gbit/s.
    t.update(poll(1_000, 0, c32(1, 4_000_000n, 0n)));
    const r = t.update(poll(2_000, 60_000, c32(1, 100n, 0n)));
    expect(r.rebooted).toBe(true);
    expect(r.rates.get(1)).toEqual(none('reset'));
  });

  it('sysUpTime wrapping at 2^32 ticks (497 days) is a wrap, not a reboot', () => {
    const t = new RateTracker();
    t.update(poll(2 ** 32 - 500, 0, hc(1, 0n, 0n)));
    // 500 ticks to the wrap + 500 after it = 1,000 ticks = 10 s; the poller saw 12 s (response 2 s late),
    // within the 5 s clock tolerance, so it is the wrap, and the rate uses the device's 10 s:
    // 1500 octets × 8 / 10 = 1200 bit/s (by the poller's 12 s it would be 1000).
    const r = t.update(poll(500, 12_000, hc(1, 1_500n, 0n)));
    expect(r).toMatchObject({ rebooted: false, intervalMs: 10_000, intervalFrom: 'sysUpTime' });
    expect(r.rates.get(1)).toEqual({ inBps: 1200, outBps: 0 });
  });

  it('sysUpTime going back is a reboot when the wrap would not match the elapsed time', () => {
    // Near 2^32, but the wrapped 10 s disagree with the poller's 60 s: rebooted right after the old uptime.
    const nearTop = new RateTracker();
    nearTop.update(poll(2 ** 32 - 500, 0, hc(1, 0n, 0n)));
    expect(nearTop.update(poll(500, 60_000, hc(1, 0n, 0n))).rebooted).toBe(true);
    // Far from 2^32: the "wrap" would be (2^32 − 2^31 + 500) ticks ≈ 248 days, longer than 1 h.
    const farFromTop = new RateTracker();
    farFromTop.update(poll(2 ** 31, 0, hc(1, 0n, 0n)));
    expect(farFromTop.update(poll(500, 60_000, hc(1, 0n, 0n))).rebooted).toBe(true);
  });

  it('a changed ifCounterDiscontinuityTime gives no rate for that interface; the last known value is kept', () => {
    const t = new RateTracker();
    const at = (k: number) => [100_000 + 6_000 * k, 60_000 * k] as const; // poll k: +60 s each
    t.update(poll(...at(0), hc(1, 0n, 0n, { discontinuity: 0 }), hc(2, 0n, 0n, { discontinuity: 0 })));
    // 7,500,000 × 8 / 60 = 1,000,000 bit/s.
    const r1 = t.update(poll(...at(1), hc(1, 7_500_000n, 0n, { discontinuity: 0 }), hc(2, 7_500_000n, 0n)));
    expect(r1.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 0 });
    expect(r1.rates.get(2)).toEqual({ inBps: 1_000_000, outBps: 0 }); // absent: no check, 0 kept
    // Interface 1's counters were cleared ("clear counters") at sysUpTime 111,500.
    const r2 = t.update(
      poll(
        ...at(2),
        hc(1, 100n, 0n, { discontinuity: 111_500 }),
        hc(2, 15_000_000n, 0n, { discontinuity: 0 }),
      ),
    );
    expect(r2.rebooted).toBe(false);
    expect(r2.rates.get(1)).toEqual(none('discontinuity'));
    expect(r2.rates.get(2)).toEqual({ inBps: 1_000_000, outBps: 0 });
    // Same discontinuity time again: (7,500,100 − 100) × 8 / 60 = 1,000,000 bit/s.
    const r3 = t.update(poll(...at(3), hc(1, 7_500_100n, 0n, { discontinuity: 111_500 })));
    expect(r3.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 0 });
    // A poll without the column keeps 111,500, so a change seen afterwards is still caught.
    t.update(poll(...at(4), hc(1, 15_000_100n, 0n)));
    const r5 = t.update(poll(...at(5), hc(1, 50n, 0n, { discontinuity: 123_000 })));
    expect(r5.rates.get(1)).toEqual(none('discontinuity'));
  });
});

describe('RateTracker: interface speed (IF-MIB ifHighSpeed)', () => {
  it('a direction above speed × 1.05 is dropped and counted; exactly at the limit is kept', () => {
    const t = new RateTracker();
    const sp = { speedMbps: 100 }; // limit: 100 × 1e6 × 1.05 = 105,000,000 bit/s
    t.update(poll(0, 0, hc(1, 0n, 0n, sp)));
    // +1,000 ticks = 10 s. in: 150,000,000 × 8 / 10 = 120,000,000 > limit → null; out: 12,500,000 × 8 / 10 =
    // 10,000,000 → kept.
    const r1 = t.update(poll(1_000, 10_000, hc(1, 150_000_000n, 12_500_000n, sp)));
    expect(r1.rates.get(1)).toEqual({ inBps: null, outBps: 10_000_000, why: 'over_speed' });
    expect(r1.overSpeed).toBe(1);
    // in: 131,250,000 × 8 / 10 = 105,000,000 = limit → kept.
    const r2 = t.update(poll(2_000, 20_000, hc(1, 281_250_000n, 12_500_000n, sp)));
    expect(r2.rates.get(1)).toEqual({ inBps: 105_000_000, outBps: 0 });
    expect(r2.overSpeed).toBe(0);
    // Both: 200,000,000 × 8 / 10 = 160,000,000 → both dropped, counted twice.
    const r3 = t.update(poll(3_000, 30_000, hc(1, 481_250_000n, 212_500_000n, sp)));
    expect(r3.rates.get(1)).toEqual(none('over_speed'));
    expect(r3.overSpeed).toBe(2);
  });

  it('the tolerance is configurable', () => {
    const t = new RateTracker({ overSpeedTolerance: 0 });
    t.update(poll(0, 0, hc(1, 0n, 0n, { speedMbps: 100 })));
    // 131,250,000 × 8 / 10 = 105,000,000 > 100,000,000 with no tolerance.
    const r = t.update(poll(1_000, 10_000, hc(1, 131_250_000n, 0n, { speedMbps: 100 })));
    expect(r.rates.get(1)).toEqual({ inBps: null, outBps: 0, why: 'over_speed' });
  });

  it('speed 0 or unknown: no check', () => {
    const t = new RateTracker();
    t.update(poll(0, 0, hc(1, 0n, 0n, { speedMbps: 0 }), hc(2, 0n, 0n)));
    // 10^12 octets × 8 / 10 s = 8 × 10^11 bit/s, reported as is.
    const r = t.update(poll(1_000, 10_000, hc(1, 10n ** 12n, 0n, { speedMbps: 0 }), hc(2, 10n ** 12n, 0n)));
    expect(r.rates.get(1)).toEqual({ inBps: 8e11, outBps: 0 });
    expect(r.rates.get(2)).toEqual({ inBps: 8e11, outBps: 0 });
    expect(r.overSpeed).toBe(0);
  });

  it('counterWrapMs: how long a counter lasts at full speed', () => {
    // 2^32 octets × 8 / 1e9 bit/s = 34.359738368 s: a 60 s poll can hide whole Counter32 wraps at 1 Gbit/s.
    expect(counterWrapMs(32, 1000)).toBeCloseTo(34_359.738368, 6);
    expect(counterWrapMs(64, 100_000)).toBeGreaterThan(1e12); // 2^64 × 8 / 1e11 s ≈ 46.8 years
    expect(counterWrapMs(32, 0)).toBe(Number.POSITIVE_INFINITY);
    expect(counterWrapMs(32, undefined)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('RateTracker: the interval', () => {
  it('comes from sysUpTime when it advanced, not from the late poller', () => {
    const t = new RateTracker();
    t.update(poll(100_000, 0, hc(1, 0n, 0n)));
    // Device: +6,000 ticks = 60 s; poller: 65 s (the response came 5 s late).
    // 7,500,000 × 8 / 60 = 1,000,000 bit/s (by the poller's 65 s it would read 923,076.9).
    const r = t.update(poll(106_000, 65_000, hc(1, 7_500_000n, 0n)));
    expect(r).toMatchObject({ intervalMs: 60_000, intervalFrom: 'sysUpTime' });
    expect(r.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 0 });
  });

  it('comes from the poller clock when sysUpTime does not advance or is missing', () => {
    const frozen = new RateTracker();
    frozen.update(poll(100_000, 0, hc(1, 0n, 0n)));
    // sysUpTime stuck at 100,000: poller's 30 s. 3,750,000 × 8 / 30 = 1,000,000 bit/s.
    const r = frozen.update(poll(100_000, 30_000, hc(1, 3_750_000n, 0n)));
    expect(r).toMatchObject({ rebooted: false, intervalMs: 30_000, intervalFrom: 'poller' });
    expect(r.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 0 });

    for (const ticks of [undefined, -1, 1.5, 2 ** 32, Number.NaN]) {
      const missing = new RateTracker();
      missing.update(poll(ticks, 1_000, hc(1, 0n, 0n)));
      const m = missing.update(poll(ticks, 31_000, hc(1, 3_750_000n, 0n)));
      expect(m).toMatchObject({ rebooted: false, intervalMs: 30_000, intervalFrom: 'poller' });
      expect(m.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 0 });
    }
  });

  it('≤ 0 or longer than maxIntervalMs gives no rate; the next good interval does', () => {
    const t = new RateTracker();
    t.update(poll(100_000, 0, hc(1, 0n, 0n)));
    // Frozen sysUpTime and the same receive time: 0 ms.
    expect(t.update(poll(100_000, 0, hc(1, 1_000n, 0n))).rates.get(1)).toEqual(none('bad_interval'));
    // Frozen sysUpTime and the poller clock going back: −5 s.
    const back = t.update(poll(100_000, -5_000, hc(1, 2_000n, 0n)));
    expect(back).toMatchObject({ intervalMs: -5_000, intervalFrom: 'poller' });
    expect(back.rates.get(1)).toEqual(none('bad_interval'));
    // +400,000 ticks = 4,000 s > 1 h.
    const long = t.update(poll(500_000, 3_995_000, hc(1, 4_000_002_000n, 0n)));
    expect(long).toMatchObject({ rebooted: false, intervalMs: 4_000_000 });
    expect(long.rates.get(1)).toEqual(none('bad_interval'));
    // Re-based on the long sample: +6,000 ticks = 60 s, 7,500,000 × 8 / 60 = 1,000,000 bit/s.
    const next = t.update(poll(506_000, 4_055_000, hc(1, 4_007_502_000n, 0n)));
    expect(next.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 0 });
  });

  it('maxIntervalMs is configurable', () => {
    const t = new RateTracker({ maxIntervalMs: 2 * 3_600_000 });
    t.update(poll(100_000, 0, hc(1, 0n, 0n)));
    // +400,000 ticks = 4,000 s ≤ 2 h: 4,000,000,000 × 8 / 4,000 = 8,000,000 bit/s.
    const r = t.update(poll(500_000, 4_000_000, hc(1, 4_000_000_000n, 0n)));
    expect(r.rates.get(1)).toEqual({ inBps: 8_000_000, outBps: 0 });
  });
});

describe('RateTracker: counter values and interfaces', () => {
  it('takes counters as decimal strings (as published) and as numbers (net-snmp Counter32)', () => {
    const t = new RateTracker();
    t.update(poll(100_000, 0, hc(1, '1000000', '18446744073709551615'), c32(2, 4_294_967_295, 0)));
    // in: 8,500,000 − 1,000,000 = 7,500,000 × 8 / 60 = 1,000,000; out: 2^64 − 1 → 749,999 is a 750,000 step
    // → 100,000. Counter32: 4,294,967,295 → 7,499,999 is 7,500,000 across the wrap → 1,000,000.
    const r = t.update(poll(106_000, 60_000, hc(1, '8500000', '749999'), c32(2, 7_499_999, 0)));
    expect(r.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 100_000 });
    expect(r.rates.get(2)).toEqual({ inBps: 1_000_000, outBps: 0 });
  });

  it('a counter that is not an unsigned integer below 2^bits gives bad_counter and re-seeds', () => {
    for (const bad of ['-1', '1e6', ' 12', '', '0x10', '4294967296', 1.5, -1, -1n, TWO32]) {
      const t = new RateTracker();
      t.update(poll(100_000, 0, c32(1, 0n, 0n)));
      expect(t.update(poll(106_000, 60_000, c32(1, bad, 0n))).rates.get(1)).toEqual(none('bad_counter'));
      expect(t.update(poll(112_000, 120_000, c32(1, 10n, 0n))).rates.get(1)).toEqual(none('first'));
    }
    expect(parseCounter('18446744073709551616', 64)).toBeUndefined(); // 2^64
    expect(parseCounter('18446744073709551615', 64)).toBe(TWO64 - 1n);
    expect(parseCounter(1n, 16 as unknown as 32)).toBeUndefined(); // a width that is not 32 or 64
  });

  it('seeds interfaces that appear and forgets those that disappear', () => {
    const t = new RateTracker();
    t.update(poll(100_000, 0, hc(1, 0n, 0n), hc(2, 0n, 0n)));
    const r1 = t.update(poll(106_000, 60_000, hc(1, 7_500_000n, 0n), hc(3, 0n, 0n)));
    expect(r1.rates).toEqual(
      new Map([
        [1, { inBps: 1_000_000, outBps: 0 }], // 7,500,000 × 8 / 60
        [3, none('first')],
      ]),
    );
    // Interface 2 comes back: it was forgotten, so it seeds again (its counter may have restarted meanwhile).
    const r2 = t.update(poll(112_000, 120_000, hc(1, 15_000_000n, 0n), hc(2, 99n, 0n)));
    expect(r2.rates).toEqual(
      new Map([
        [1, { inBps: 1_000_000, outBps: 0 }],
        [2, none('first')],
      ]),
    );
  });

  it('a change of counter width (32 → 64 and back) re-seeds', () => {
    const t = new RateTracker();
    t.update(poll(100_000, 0, c32(1, 4_000_000_000n, 0n)));
    // ifHCInOctets is a different counter from ifInOctets: 90,000,000,000 − 4,000,000,000 means nothing.
    const r1 = t.update(poll(106_000, 60_000, hc(1, 90_000_000_000n, 0n)));
    expect(r1.rates.get(1)).toEqual(none('bits_changed'));
    // +7,500,000 × 8 / 60 = 1,000,000 bit/s.
    const r2 = t.update(poll(112_000, 120_000, hc(1, 90_007_500_000n, 0n)));
    expect(r2.rates.get(1)).toEqual({ inBps: 1_000_000, outBps: 0 });
    const r3 = t.update(poll(118_000, 180_000, c32(1, 5n, 0n)));
    expect(r3.rates.get(1)).toEqual(none('bits_changed'));
  });

  it('rejects nonsensical options', () => {
    expect(() => new RateTracker({ overSpeedTolerance: -0.1 })).toThrow(RangeError);
    expect(() => new RateTracker({ maxIntervalMs: 0 })).toThrow(RangeError);
    expect(() => new RateTracker({ clockToleranceMs: Number.NaN })).toThrow(RangeError);
  });
});
