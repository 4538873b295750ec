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
  private readonly windows = new Map<string, Window>();
  /**
   * The windows in the order they started (every window is as long, so also the order they end), from `head`
   * on; an entry whose key has a newer window, or none, is skipped. Sweeping ended windows and finding the
   * oldest live one start here, so a full map costs a step or two per new address — never a scan (nor a walk
   * over a Map's deleted entries, which V8 keeps at its front until it rehashes).
   */
  private order: { key: string; w: Window }[] = [];
  private head = 0;
  readonly maxKeys: number;
  /** Entries of `order` looked at by sweeps so far: the work the bound costs (for tests). */
  sweepSteps = 0;

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
      if (this.windows.size >= this.maxKeys) this.makeRoom(now);
      w = { failures: 0, endsAtMs: now + this.opts.windowMs };
      this.windows.set(key, w);
      this.order.push({ key, w });
    }
    w.failures++;
    return w.failures === this.opts.max;
  }

  /** Addresses tracked now (for tests and stats). */
  get size(): number {
    return this.windows.size;
  }

  private makeRoom(now: number): void {
    // Forget ended windows from the front; if none had ended, the oldest live one.
    while (this.head < this.order.length) {
      const { key, w } = this.order[this.head]!;
      this.sweepSteps++;
      if (this.windows.get(key) !== w) {
        this.head++; // stale: the key has a newer window, or none
        continue;
      }
      if (w.endsAtMs > now && this.windows.size < this.maxKeys) break;
      this.windows.delete(key);
      this.head++;
      if (w.endsAtMs > now) break; // made room by forgetting the oldest live window
    }
    if (this.head > 1_024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}

interface Window {
  failures: number;
  endsAtMs: number;
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
