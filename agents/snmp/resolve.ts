import { lookup as dnsLookup } from 'node:dns';
import { isIP } from 'node:net';

/**
 * Host names of probe targets resolved in Node (node:dns `lookup`: the system resolver, /etc/hosts included), so
 * fping and the TCP connects get addresses only and a TCP RTT never includes a lookup (agents/snmp/README.md,
 * “Probes”). A cache: a name is looked up again `everyMs` after its last lookup — or at the next resolve() (the
 * next cycle) when its last lookup failed, so a resolver hiccup at start or a name fixed in DNS costs one cycle,
 * not `everyMs`; a failed re-resolution keeps the last good answer while it is younger than `keepMs`. A name's
 * lookup never runs twice at once, and at most `concurrency` run in all, which bounds what the retries ask of a
 * failing resolver. A cycle waits at most `timeoutMs` for its lookups: a
 * name still unanswered then counts as failed for that cycle (its lookup goes on, and a late answer serves the
 * next cycle). At most `concurrency` lookups run at once — getaddrinfo occupies one of libuv's four threadpool
 * threads, which the spool's file I/O needs too.
 */

export type LookupFn = (
  name: string,
  callback: (err: NodeJS.ErrnoException | null, address: string) => void,
) => void;

const systemLookup: LookupFn = (name, cb) => dnsLookup(name, { verbatim: true }, (err, a) => cb(err, a));

/**
 * An address to probe, or why there is none: a resolver error code, `ETIMEOUT` (asked, unanswered by the
 * deadline) or `EQUEUED` (not asked yet: waiting for a slot).
 */
export type Resolution =
  | { ok: true; address: string; stale: boolean }
  /** `notFound`: the resolver answered that the name does not exist (ENOTFOUND/ENODATA) — not a resolver failure. */
  | { ok: false; code: string; notFound: boolean };

/** Errors by which the resolver says the name has no address (rather than that it could not find out). */
const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA']);

interface Entry {
  address?: string;
  /** When `address` was last obtained. */
  goodAt?: number;
  /** When the last lookup started. */
  checkedAt: number;
  /** The last lookup's error (cleared by a success). */
  error?: string;
  /** The lookup in flight has been handed to the resolver (not just waiting for a slot). */
  asked?: boolean;
  pending?: Promise<void>;
}

export class NameCache {
  private readonly entries = new Map<string, Entry>();
  private slots = 0;
  /** Waiting for a slot: called with true when handed one, false when closed (then it holds none). */
  private readonly queue: ((granted: boolean) => void)[] = [];
  /** Ends the resolve() calls waiting for lookups (close()). */
  private readonly waking = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly opts: {
      everyMs: number;
      keepMs: number;
      timeoutMs: number;
      concurrency?: number;
      lookup?: LookupFn;
      now?: () => number;
    },
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** Every name's resolution (an IP address stands for itself), waiting for lookups at most `waitMs`. */
  async resolve(names: readonly string[], waitMs = this.opts.timeoutMs): Promise<Map<string, Resolution>> {
    const wanted = new Set(names);
    const waits: Promise<void>[] = [];
    const now = this.now();
    for (const name of wanted) {
      if (isIP(name)) continue;
      let e = this.entries.get(name);
      if (!e) {
        e = { checkedAt: now };
        this.entries.set(name, e);
        this.start(name, e);
      } else if (!e.pending && (e.error !== undefined || now - e.checkedAt >= this.opts.everyMs)) {
        // A failed lookup is retried at once (not cached like an answer); a good one after everyMs.
        e.checkedAt = now;
        this.start(name, e);
      }
      if (e.pending) waits.push(e.pending);
    }
    // Names no longer probed are forgotten (a lookup in flight finishes into the removed entry, unseen).
    for (const name of this.entries.keys()) if (!wanted.has(name)) this.entries.delete(name);
    if (waits.length > 0 && !this.closed) {
      let wake: (() => void) | undefined;
      const timer = new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(0, waitMs));
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.waking.add(wake!);
      await Promise.race([Promise.all(waits), timer]);
      wake!();
      this.waking.delete(wake!);
    }
    const at = this.now();
    const out = new Map<string, Resolution>();
    for (const name of wanted) {
      if (isIP(name)) {
        out.set(name, { ok: true, address: name, stale: false });
        continue;
      }
      const e = this.entries.get(name)!;
      const fresh = !e.pending && e.error === undefined;
      if (e.address !== undefined && (fresh || at - e.goodAt! < this.opts.keepMs))
        out.set(name, { ok: true, address: e.address, stale: !fresh });
      else if (e.error === undefined)
        // Asked and unanswered by the deadline; or not asked: still waiting for a slot (many names at start-up),
        // or closed first.
        out.set(name, { ok: false, code: e.pending && e.asked ? 'ETIMEOUT' : 'EQUEUED', notFound: false });
      else out.set(name, { ok: false, code: e.error!, notFound: NOT_FOUND.has(e.error!) });
    }
    return out;
  }

  /**
   * No lookup starts after this (one in flight ends unseen), and a resolve() waiting for lookups returns at once
   * (with what it has: the prober's stop() does not wait for a hanging resolver).
   */
  close(): void {
    this.closed = true;
    for (const r of this.queue.splice(0)) r(false);
    for (const wake of [...this.waking]) wake();
  }

  /** Lookups holding a slot (running, or about to start). */
  get active(): number {
    return this.slots;
  }

  private start(name: string, e: Entry): void {
    const lookup = this.opts.lookup ?? systemLookup;
    let held = false;
    e.pending = this.slot().then((granted) =>
      new Promise<void>((resolve) => {
        held = granted;
        if (this.closed) return resolve();
        e.asked = true;
        try {
          lookup(name, (err, address) => {
            if (err || !isIP(address ?? '')) e.error = err?.code ?? 'EBADRESP';
            else {
              e.address = address;
              e.goodAt = this.now();
              e.error = undefined;
            }
            resolve();
          });
        } catch (err) {
          // dns.lookup throws on some arguments instead of calling back: a failed lookup, never a crash.
          e.error = (err as NodeJS.ErrnoException).code ?? 'EBADNAME';
          resolve();
        }
      }).finally(() => {
        e.pending = undefined;
        e.asked = false;
        // Only a slot held is given back: a waiter that close() woke holds none.
        if (held) this.release();
      }),
    );
  }

  /** True once a slot is held; false when closed first (no slot held). */
  private slot(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.slots < (this.opts.concurrency ?? 2)) {
      this.slots++;
      return Promise.resolve(true);
    }
    return new Promise((r) => this.queue.push(r));
  }

  /** The slot goes to the next waiter (still held: `slots` unchanged), or is freed. */
  private release(): void {
    const next = this.queue.shift();
    if (next) next(true);
    else this.slots--;
  }
}
