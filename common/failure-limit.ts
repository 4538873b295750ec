import { isIPv4, isIPv6 } from 'node:net';

/**
 * Failed authentications per client address, in fixed windows: once an address has failed `max` times within
 * `windowMs`, it is limited until its window ends. Used by the API (wrong or missing bearer tokens) and the
 * embedded broker (wrong MQTT credentials); each decides what a limited address may still do.
 *
 * Bounded, like every per-sender resource: at most `maxKeys` addresses are tracked. When that many are, windows
 * that ended are swept, and if none had, the oldest address is forgotten — an attacker with very many
 * addresses then costs each of them its budget, never memory.
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { failures: number; endsAtMs: number }>();
  readonly maxKeys: number;

  constructor(
    readonly opts: { max: number; windowMs: number; maxKeys?: number },
    private readonly now: () => number = Date.now,
  ) {
    this.maxKeys = opts.maxKeys ?? 100_000;
  }

  /** How long `key` is still limited, in ms; 0 when it is not. */
  limitedForMs(key: string): number {
    const w = this.windows.get(key);
    if (!w) return 0;
    const leftMs = w.endsAtMs - this.now();
    if (leftMs <= 0) {
      this.windows.delete(key);
      return 0;
    }
    return w.failures >= this.opts.max ? leftMs : 0;
  }

  /** Counts a failure of `key`; true when it is the one that reaches the limit (to log once per window). */
  fail(key: string): boolean {
    const now = this.now();
    let w = this.windows.get(key);
    if (!w || w.endsAtMs <= now) {
      if (w) this.windows.delete(key);
      else if (this.windows.size >= this.maxKeys) this.makeRoom(now);
      w = { failures: 0, endsAtMs: now + this.opts.windowMs };
      this.windows.set(key, w);
    }
    w.failures++;
    return w.failures === this.opts.max;
  }

  /** Addresses tracked now (for tests and stats). */
  get size(): number {
    return this.windows.size;
  }

  private makeRoom(now: number): void {
    // Insertion order is window start (a new window is inserted anew), and every window is as long: ended ones
    // are at the front. Sweeping from the front stops at the first live one, so a full map of live windows
    // costs one step per new address, not a scan of all of them.
    for (const [k, w] of this.windows) {
      if (w.endsAtMs > now) break;
      this.windows.delete(k);
    }
    if (this.windows.size >= this.maxKeys) this.windows.delete(this.windows.keys().next().value!);
  }
}

/**
 * The key of a client address for per-address limits: an IPv4 address as it is (also when written as an
 * IPv4-mapped IPv6 address), an IPv6 address by its /64 — one host is commonly given a whole /64, so counting
 * single IPv6 addresses would give one attacker 2^64 budgets.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address)) return address;
  const bare = address.split('%')[0]!; // a zone index (fe80::1%eth0) is not part of the address
  if (!isIPv6(bare)) return address;
  const [head = '', tail] = bare.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
