/**
 * Counter → rate engine of the SNMP poller. Pure: no I/O, no clock of its own; the poller feeds it one
 * `DeviceSample` per poll and publishes what comes back (`IfaceReading.inBps/outBps`, `null` when no honest
 * rate exists). One `RateTracker` per device.
 *
 * Why each rule (sources of truth):
 *
 * - Wraps. IF-MIB octet counters are Counter32 (ifInOctets/ifOutOctets) or Counter64 (ifHCInOctets/
 *   ifHCOutOctets). RFC 2578 §7.1.6 / §7.1.10: they increase monotonically to 2^32−1 / 2^64−1 and then "wrap
 *   around and start increasing again from zero", so a delta is `(now − prev) mod 2^bits`, computed in bigint
 *   (Counter64 values exceed 2^53; a `number` would round them and the delta with them).
 * - Counter64 going backwards is a reset, not a wrap. Reaching 2^63 octets takes 23 years at 100 Gbit/s, so a
 *   modular delta ≥ 2^63 (half the range, the serial-number rule of RFC 1982) means the counter went back —
 *   an unannounced reset ("clear counters") — and would otherwise be a spike of ~10^18 bit/s. Counter32 has
 *   no such margin (a 1 Gbit/s link moves 2^32 octets in 34 s), so every Counter32 step is a wrap.
 * - Counter32 can wrap more than once per interval on a fast link and the extra wraps are invisible: the rate
 *   is then too low, never too high. RFC 2863 §3.1.6 ("Counter Size") is why fast interfaces have the HC
 *   counters; `counterWrapMs()` tells the poller when its interval is too long for a Counter32 interface.
 * - Discontinuities. RFC 2578 §7.1.6: "Counters have no defined initial value" and discontinuities occur at
 *   re-initialisation of the management system; RFC 2863 adds ifCounterDiscontinuityTime
 *   (1.3.6.1.2.1.31.1.1.1.19), the sysUpTime of the interface's last counter discontinuity. So:
 *   - sysUpTime (SNMPv2-MIB, RFC 3418) went backwards → the agent restarted: every interface yields no rate
 *     (`why: 'reset'`) and `rebooted: true`, never a wrap-sized spike. sysUpTime is TimeTicks, itself
 *     "modulo 2^32" hundredths of a second (RFC 2578 §7.1.8) and wraps after 497 days: a step back is taken as
 *     that wrap only when the wrapped interval is plausible (≤ `maxIntervalMs`) and agrees with the poller's
 *     own elapsed time within `clockToleranceMs`; otherwise it is a reboot.
 *   - sysUpTime advanced but is shorter than the time since the previous poll → the agent (re)started after
 *     that poll (e.g. uptime 10 s → reboot → 20 s a minute later): also a reboot. Skipped when sysUpTime did
 *     not advance at all, so agents with a frozen sysUpTime still get rates.
 *   - ifCounterDiscontinuityTime changed between polls → that interface yields no rate
 *     (`why: 'discontinuity'`). The last known value is kept across polls that lack it.
 *   Note sysUpTime counts from the *agent's* start: an snmpd restart also reads as a reboot, which costs one
 *   interval of rates and never produces a wrong one.
 * - The first sample of an interface only seeds it; so does the first after a change of counter width
 *   (Counter32 ↔ Counter64: the two are different counters) and the first after an unparsable counter.
 * - Over speed. ifHighSpeed (RFC 2863: "an estimate of the interface's current bandwidth in units of
 *   1,000,000 bits per second") bounds what the link can carry; a rate above it × (1 + `overSpeedTolerance`,
 *   5 % for timing jitter) is impossible, so that direction is dropped (null) and counted in `overSpeed`.
 *   Speed 0 or unknown: no check.
 * - The interval. Preferred: the delta of the agent's sysUpTime. The agent stamps sysUpTime when it builds
 *   the response, next to the counters, by the device's own clock, so the poller's scheduling, queueing,
 *   retries and network latency do not skew the rate (a 2 s late response on a 60 s poll would otherwise be a
 *   3 % error, and twice that on the next interval). Fallback: the poller's monotonic receive times
 *   (`atMs`), used when sysUpTime is absent or did not advance (some agents cache or freeze it). An interval
 *   ≤ 0 or longer than `maxIntervalMs` (1 h by default, the horizon RFC 2578 §7.1.10 uses for "would wrap",
 *   and past which a rate is an average too coarse to show as "live bandwidth") yields no rate.
 * - Rates are bit/s: octets × 8 / seconds.
 */

/** Why an interface has no rate (or lost one direction) in this interval. */
export type RateWhy =
  /** First sample of this interface: seeds only. */
  | 'first'
  /** The device (its SNMP agent) restarted: sysUpTime went back or is shorter than the time since the last poll. */
  | 'reset'
  /** IF-MIB ifCounterDiscontinuityTime changed. */
  | 'discontinuity'
  /** A Counter64 went backwards (modular delta ≥ 2^63): an unannounced counter reset, not a wrap. */
  | 'counter_backwards'
  /** At least one direction exceeded ifHighSpeed × (1 + tolerance); that direction is null. */
  | 'over_speed'
  /** The interval is ≤ 0, unknown, or longer than `maxIntervalMs`. */
  | 'bad_interval'
  /** The counter width changed (Counter32 ↔ Counter64): re-seeded. */
  | 'bits_changed'
  /** A counter is not an unsigned integer below 2^bits: the interface is forgotten and re-seeds next time. */
  | 'bad_counter';

/** An unsigned counter: bigint, decimal string (as published, see `counterSchema`) or safe-integer number. */
export type CounterValue = bigint | string | number;

export interface CounterSample {
  /** ifHCInOctets (bits 64) or ifInOctets (bits 32). */
  inOctets: CounterValue;
  /** ifHCOutOctets (bits 64) or ifOutOctets (bits 32). */
  outOctets: CounterValue;
  bits: 32 | 64;
  /** IF-MIB ifCounterDiscontinuityTime (TimeStamp, ticks of sysUpTime); absent when the agent lacks it. */
  discontinuity?: number;
  /** IF-MIB ifHighSpeed (Mbit/s); 0 or absent disables the over-speed check. */
  speedMbps?: number;
}

export interface DeviceSample {
  /** SNMPv2-MIB sysUpTime.0 (TimeTicks, 1/100 s). Absent, or not an integer in [0, 2^32): not available. */
  sysUpTimeTicks?: number;
  /** When the poller received the response, by its monotonic clock (e.g. `performance.now()`), ms. */
  atMs: number;
  /** ifIndex → counters. */
  ifaces: ReadonlyMap<number, CounterSample>;
}

export interface IfaceRate {
  inBps: number | null;
  outBps: number | null;
  /** Present when at least one direction is null. */
  why?: RateWhy;
}

export interface RateResult {
  /** One entry per interface of the sample (the no-rate ones are shared and frozen: read, do not change). */
  rates: Map<number, Readonly<IfaceRate>>;
  /** The agent restarted since the previous poll (the poller's cue for a `reboot` event). */
  rebooted: boolean;
  /** Directions dropped because they exceeded the interface speed in this update. */
  overSpeed: number;
  /** The interval measured (even when rejected); null on the first poll, after a reboot, or when unknown. */
  intervalMs: number | null;
  /** Which clock gave `intervalMs`. */
  intervalFrom: 'sysUpTime' | 'poller' | null;
}

export interface RateTrackerOptions {
  /** Fraction above ifHighSpeed still accepted (timing jitter). Default 0.05. */
  overSpeedTolerance?: number;
  /** Longest interval that yields a rate. Default 3,600,000 (1 h). */
  maxIntervalMs?: number;
  /**
   * How far the agent's and the poller's elapsed times may disagree before a sysUpTime step back is a reboot
   * rather than its 497-day wrap (and before "up less long than since the last poll" is a reboot). Covers
   * response latency and one retry. Default 5,000.
   */
  clockToleranceMs?: number;
}

export const RATE_DEFAULTS = {
  overSpeedTolerance: 0.05,
  maxIntervalMs: 3_600_000,
  clockToleranceMs: 5_000,
} as const satisfies Required<RateTrackerOptions>;

/** TimeTicks are modulo 2^32 hundredths of a second (RFC 2578 §7.1.8). */
const TICKS_MODULUS = 2 ** 32;
const MS_PER_TICK = 10;
/** Half the Counter64 range: a larger modular delta is the counter going back (RFC 1982-style comparison). */
const COUNTER64_HALF = 1n << 63n;
/** 2^bits: a counter must be below it. Constants, so a check allocates no bigint. */
const COUNTER_LIMIT = { 32: 1n << 32n, 64: 1n << 64n } as const;
/** Largest octet delta whose × 8000 is still exact as a number (below 2^53): then no bigint multiplication. */
const EXACT_DELTA = BigInt(Math.floor(Number.MAX_SAFE_INTEGER / 8000));
const DECIMAL = /^\d{1,20}$/;

/** The no-rate results, one shared frozen object per reason (an update allocates none for them). */
const NONE = Object.fromEntries(
  (
    [
      'first',
      'reset',
      'discontinuity',
      'counter_backwards',
      'over_speed',
      'bad_interval',
      'bits_changed',
      'bad_counter',
    ] as const
  ).map((why) => [why, Object.freeze({ inBps: null, outBps: null, why })]),
) as Record<RateWhy, Readonly<IfaceRate>>;

/** (now − prev) mod 2^bits (RFC 2578 §7.1.6 / §7.1.10 wrap semantics); no second bigint when it did not wrap. */
function counterDelta(now: bigint, prev: bigint, bits: 32 | 64): bigint {
  const d = now - prev;
  return d >= 0n ? d : BigInt.asUintN(bits, d);
}

/** octets × 8 / (ms / 1000) with one rounding: exact while octets × 8000 < 2^53. */
function bitsPerSecond(octets: bigint, intervalMs: number): number {
  return octets <= EXACT_DELTA ? (Number(octets) * 8000) / intervalMs : Number(octets * 8000n) / intervalMs;
}

/**
 * How long an interface of `speedMbps` takes to wrap a `bits`-bit octet counter at full speed, ms: a poll
 * interval at or above this can hide whole wraps (a Counter32 at 1000 Mbit/s: 2^32 × 8 / 1e9 s = 34.4 s).
 * `Infinity` when the speed is 0 or unknown.
 */
export function counterWrapMs(bits: 32 | 64, speedMbps: number | undefined): number {
  if (speedMbps === undefined || !Number.isFinite(speedMbps) || speedMbps <= 0)
    return Number.POSITIVE_INFINITY;
  return ((2 ** bits * 8) / (speedMbps * 1e6)) * 1000;
}

/** The counter as bigint, or undefined when it is not an unsigned integer below 2^bits. */
export function parseCounter(value: CounterValue, bits: 32 | 64): bigint | undefined {
  if (bits !== 32 && bits !== 64) return undefined; // runtime guard: BigInt(bits) must not throw
  let n: bigint;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'string' && DECIMAL.test(value)) n = BigInt(value);
  else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
  else return undefined;
  return n >= 0n && n < COUNTER_LIMIT[bits] ? n : undefined;
}

function ticks(t: number | undefined): number | undefined {
  return t !== undefined && Number.isInteger(t) && t >= 0 && t < TICKS_MODULUS ? t : undefined;
}

interface Clock {
  ticks: number | undefined;
  atMs: number;
}

interface IfaceState {
  bits: 32 | 64;
  inOctets: bigint;
  outOctets: bigint;
  /** Last known ifCounterDiscontinuityTime. */
  discontinuity: number | undefined;
}

interface Interval {
  rebooted: boolean;
  intervalMs: number | null;
  intervalFrom: 'sysUpTime' | 'poller' | null;
}

export class RateTracker {
  readonly overSpeedTolerance: number;
  readonly maxIntervalMs: number;
  readonly clockToleranceMs: number;
  private clock: Clock | undefined;
  private ifaces = new Map<number, IfaceState>();

  constructor(opts: RateTrackerOptions = {}) {
    this.overSpeedTolerance = opts.overSpeedTolerance ?? RATE_DEFAULTS.overSpeedTolerance;
    this.maxIntervalMs = opts.maxIntervalMs ?? RATE_DEFAULTS.maxIntervalMs;
    this.clockToleranceMs = opts.clockToleranceMs ?? RATE_DEFAULTS.clockToleranceMs;
    if (!(Number.isFinite(this.overSpeedTolerance) && this.overSpeedTolerance >= 0)) {
      throw new RangeError(`overSpeedTolerance must be a finite number ≥ 0, got ${this.overSpeedTolerance}`);
    }
    if (!(Number.isFinite(this.maxIntervalMs) && this.maxIntervalMs > 0)) {
      throw new RangeError(`maxIntervalMs must be a finite number > 0, got ${this.maxIntervalMs}`);
    }
    if (!(Number.isFinite(this.clockToleranceMs) && this.clockToleranceMs >= 0)) {
      throw new RangeError(`clockToleranceMs must be a finite number ≥ 0, got ${this.clockToleranceMs}`);
    }
  }

  /** Feed one poll of the device; returns a rate (or the reason for none) for every interface in it. */
  update(sample: DeviceSample): RateResult {
    const clock: Clock = { ticks: ticks(sample.sysUpTimeTicks), atMs: sample.atMs };
    const interval: Interval = this.clock
      ? this.interval(this.clock, clock)
      : { rebooted: false, intervalMs: null, intervalFrom: null };
    const { rebooted, intervalMs } = interval;
    const usableMs =
      intervalMs !== null && intervalMs > 0 && intervalMs <= this.maxIntervalMs ? intervalMs : null;

    const rates = new Map<number, Readonly<IfaceRate>>();
    const next = new Map<number, IfaceState>(); // interfaces absent from this sample are forgotten
    let overSpeed = 0;

    for (const [index, s] of sample.ifaces) {
      const inOctets = parseCounter(s.inOctets, s.bits);
      const outOctets = parseCounter(s.outOctets, s.bits);
      if (inOctets === undefined || outOctets === undefined) {
        rates.set(index, NONE.bad_counter); // not stored: the next good sample seeds afresh
        continue;
      }
      const prev = this.ifaces.get(index);
      // Kept across polls that lack it; a pre-reboot value means nothing in the new sysUpTime epoch.
      const discontinuity = ticks(s.discontinuity) ?? (rebooted ? undefined : prev?.discontinuity);
      const cur: IfaceState = { bits: s.bits, inOctets, outOctets, discontinuity };

      if (!prev) rates.set(index, NONE.first);
      else if (rebooted) rates.set(index, NONE.reset);
      else if (usableMs === null) rates.set(index, NONE.bad_interval);
      else if (prev.bits !== cur.bits) rates.set(index, NONE.bits_changed);
      else if (prev.discontinuity !== undefined && cur.discontinuity !== prev.discontinuity) {
        rates.set(index, NONE.discontinuity);
      } else {
        const rate = this.rate(prev, cur, usableMs, s.speedMbps);
        if (rate.why === 'over_speed')
          overSpeed += (rate.inBps === null ? 1 : 0) + (rate.outBps === null ? 1 : 0);
        rates.set(index, rate);
      }
      // Every outcome re-bases on this sample: the previous state object takes its values (no new one per poll).
      if (prev) {
        prev.bits = cur.bits;
        prev.inOctets = inOctets;
        prev.outOctets = outOctets;
        prev.discontinuity = discontinuity;
        next.set(index, prev);
      } else next.set(index, cur);
    }

    this.clock = clock;
    this.ifaces = next;
    return {
      rates,
      rebooted,
      overSpeed,
      intervalMs: interval.intervalMs,
      intervalFrom: interval.intervalFrom,
    };
  }

  /** The rate of one interface whose previous sample is comparable (same width, no reset, good interval). */
  private rate(
    prev: IfaceState,
    cur: IfaceState,
    intervalMs: number,
    speedMbps: number | undefined,
  ): IfaceRate {
    const inDelta = counterDelta(cur.inOctets, prev.inOctets, cur.bits);
    const outDelta = counterDelta(cur.outOctets, prev.outOctets, cur.bits);
    if (cur.bits === 64 && (inDelta >= COUNTER64_HALF || outDelta >= COUNTER64_HALF)) {
      return NONE.counter_backwards;
    }
    let inBps: number | null = bitsPerSecond(inDelta, intervalMs);
    let outBps: number | null = bitsPerSecond(outDelta, intervalMs);
    if (speedMbps !== undefined && Number.isFinite(speedMbps) && speedMbps > 0) {
      const limitBps = speedMbps * 1e6 * (1 + this.overSpeedTolerance);
      if (inBps > limitBps) inBps = null;
      if (outBps > limitBps) outBps = null;
    }
    return inBps === null || outBps === null ? { inBps, outBps, why: 'over_speed' } : { inBps, outBps };
  }

  /** Reboot detection and the interval, from the agent's sysUpTime when it advanced, else the poller's clock. */
  private interval(prev: Clock, cur: Clock): Interval {
    const pollerMs = cur.atMs - prev.atMs; // NaN when either is not finite
    const pollerKnown = Number.isFinite(pollerMs) && pollerMs > 0;
    const reboot: Interval = { rebooted: true, intervalMs: null, intervalFrom: null };

    if (cur.ticks !== undefined && prev.ticks !== undefined && cur.ticks < prev.ticks) {
      // Back: the 2^32 TimeTicks wrap (RFC 2578 §7.1.8) only if that interval is plausible, else a restart.
      const wrappedMs = (cur.ticks + TICKS_MODULUS - prev.ticks) * MS_PER_TICK;
      const plausible =
        wrappedMs <= this.maxIntervalMs &&
        (!pollerKnown || Math.abs(wrappedMs - pollerMs) <= this.clockToleranceMs);
      return plausible ? { rebooted: false, intervalMs: wrappedMs, intervalFrom: 'sysUpTime' } : reboot;
    }
    if (cur.ticks !== undefined && (prev.ticks === undefined || cur.ticks > prev.ticks)) {
      // Up for less time than has passed since the previous poll: the agent started after it.
      if (pollerKnown && cur.ticks * MS_PER_TICK < pollerMs - this.clockToleranceMs) return reboot;
      if (prev.ticks !== undefined) {
        return {
          rebooted: false,
          intervalMs: (cur.ticks - prev.ticks) * MS_PER_TICK,
          intervalFrom: 'sysUpTime',
        };
      }
    }
    // sysUpTime unavailable or frozen: the poller's monotonic receive times.
    return Number.isFinite(pollerMs)
      ? { rebooted: false, intervalMs: pollerMs, intervalFrom: 'poller' }
      : { rebooted: false, intervalMs: null, intervalFrom: null };
  }
}
