import { createHash } from 'node:crypto';
import type { Rule, RuleName, Severity } from './rules.js';

/**
 * The alert engine: a pure state machine (design: README.md). Signals and the clock go in, notifications come
 * out; it does no I/O, so tests drive it with an exact clock.
 */

export type AlertState = 'pending' | 'firing' | 'resolved';

export interface Alert {
  /** Stable, URL-safe id (`idOf` the key and when it started: a later alert of the same key gets a new id). */
  id: string;
  key: string;
  rule: RuleName;
  severity: Severity;
  school: string;
  device: string | null;
  subject: string | null;
  state: AlertState;
  /** The condition is true now. */
  raw: boolean;
  startedAtMs: number;
  /** Start of the grace clock (in teaching time for `when: teaching`); null while not counting. */
  pendingSinceMs: number | null;
  /** When the condition last became false (while firing). */
  clearSinceMs: number | null;
  firingAtMs: number | null;
  resolvedAtMs: number | null;
  /** Last notification about this alert (firing or reminder); null: never notified. */
  notifiedAtMs: number | null;
  /** Firing was decided while silenced: notify when the silence ends. */
  owedFiring: boolean;
  ackedAtMs: number | null;
  ackedBy: string | null;
  /** Times the condition changed, within the flap window. */
  changes: number[];
  flapping: boolean;
  /** The alert that inhibits this one (a school's uplink_down), if any. */
  inhibitedBy: string | null;
  /** For a parent: the devices whose alerts it inhibits. */
  affected: string[];
  message: string;
  details: Record<string, string | number | boolean>;
}

export type Signal =
  | {
      /** A condition of a rule for a school / device / subject is now true or false. */
      kind: 'condition';
      rule: RuleName;
      school: string;
      device?: string | undefined;
      subject?: string | undefined;
      active: boolean;
      atMs: number;
      message?: string;
      details?: Record<string, string | number | boolean>;
    }
  | {
      /** Something happened once (a reboot): notified if its rule allows, then closed. */
      kind: 'instant';
      rule: RuleName;
      school: string;
      device?: string | undefined;
      subject?: string | undefined;
      atMs: number;
      message: string;
      details?: Record<string, string | number | boolean>;
    };

export interface NotificationItem {
  kind: 'firing' | 'resolved' | 'reminder';
  alert: Alert;
}

/** One message: the items of one school gathered over `groupWaitS`. */
export interface Notification {
  school: string;
  atMs: number;
  items: NotificationItem[];
}

/**
 * A school's message being gathered. It goes out once `groupWaitS` has passed since the earliest of its alerts
 * *started* (so a grace period at least as long as the group wait costs no extra delay). When it goes, it takes
 * along the school's pending alerts whose grace would end within the group wait: devices that died together but
 * whose wills arrived seconds apart are one message, and none waits longer than its grace.
 */
export interface QueuedMessage {
  firstMs: number;
  items: NotificationItem[];
}

export interface EngineOptions {
  rules: Record<RuleName, Rule>;
  groupWaitS: number;
  flap: { changes: number; windowS: number };
  /** Whether a school is in class now (its calendar); false for unknown schools. */
  teaching: (school: string, atMs: number) => boolean;
  /**
   * When `classMs` of the school's class time have passed since `fromMs` (`Calendar.teachingDeadline`);
   * Infinity for unknown schools. For the rules whose grace pauses in breaks (`pauseInBreaks`).
   */
  teachingDeadline: (school: string, fromMs: number, classMs: number) => number;
  /** Whether notifications about this alert are suppressed now (silences, maintenance windows). */
  silenced: (alert: Alert, atMs: number) => boolean;
  /** Resolved alerts kept for the history API. */
  historyMax: number;
}

/** The rule's grace counts class time across breaks: paused by a break, not reset (`Rule.pauseInBreaks`). */
const pausesInBreaks = (rule: Rule): boolean => rule.when === 'teaching' && rule.pauseInBreaks;

/** Rules a school's uplink outage inhibits: the school's devices cannot report while its uplink is down. */
const CHILD_RULES = new Set<RuleName>(['device_offline', 'snmp_unreachable', 'data_gap']);
const PARENT_RULE: RuleName = 'uplink_down';

export const alertKey = (rule: string, school: string, device?: string | null, subject?: string | null) =>
  `${rule}|${school}|${device ?? ''}|${subject ?? ''}`;

/**
 * An alert's id: its rule and a hash of its key and start, e.g. `uplink_down-3f2a9c0e51b7d48a6c21`. URL-safe
 * (`POST /v1/alerts/{id}/ack` needs no escaping) where the key is not (`|`, and ids of any school or device);
 * 80 bits of SHA-256, so two alerts of a state file's history never share one. Ids before #15 were the key and
 * the start joined by `|`: `idOf` of such an id is the id the alert has now, so a state file written then loads
 * with the same ids a fresh start would give (state.ts, `migrateIds`).
 */
export function idOf(keyAndStart: string): string {
  const rule = keyAndStart.slice(0, keyAndStart.indexOf('|'));
  return `${rule}-${createHash('sha256').update(keyAndStart).digest('hex').slice(0, 20)}`;
}

/** Whether `id` is of the form before #15 (`key|start`), which `idOf` turns into the current one. */
export const isOldId = (id: string): boolean => id.includes('|');

export class AlertEngine {
  readonly active = new Map<string, Alert>();
  readonly history: Alert[] = [];
  private readonly queue = new Map<string, QueuedMessage>();
  /** Bumped on every change, for the state file's "write when dirty". */
  version = 0;
  /**
   * The earliest time a timer (grace, hysteresis, reminder, flap window, group window) runs out: the caller ticks
   * then. Calendar and silence boundaries are not in it; the caller also ticks at a coarse interval for those.
   */
  nextWakeMs = Number.POSITIVE_INFINITY;

  constructor(private readonly opts: EngineOptions) {}

  /**
   * Restores state (from the state file) without notifying anything again; messages that were still waiting
   * out their group window are sent when it ends.
   */
  restore(active: Alert[], history: Alert[], queue: [string, QueuedMessage][] = []): void {
    for (const a of active) this.active.set(a.key, a);
    this.history.push(...history.slice(-this.opts.historyMax));
    for (const [school, q] of queue) this.queue.set(school, q);
    this.nextWakeMs = Number.NEGATIVE_INFINITY; // tick at once: timers may have run out while stopped
  }

  /** Messages waiting out their group window (for the state file). */
  pendingQueue(): [string, QueuedMessage][] {
    return [...this.queue.entries()];
  }

  observe(sig: Signal): void {
    const rule = this.opts.rules[sig.rule];
    if (!rule.enabled) return;
    const key = alertKey(sig.rule, sig.school, sig.device, sig.subject);
    if (sig.kind === 'instant') {
      if (rule.when === 'teaching' && !this.opts.teaching(sig.school, sig.atMs)) return;
      const a = this.create(key, sig, rule, sig.atMs);
      a.state = 'firing';
      a.firingAtMs = sig.atMs;
      // Recorded in the history either way; a silence or maintenance window (a planned reboot) keeps it quiet.
      if (!this.opts.silenced(a, sig.atMs)) {
        this.notify(a, 'firing', sig.atMs);
        this.wake(sig.atMs + this.opts.groupWaitS * 1000); // (a tick's notifications are flushed by that tick)
      }
      this.close(a, sig.atMs);
      return;
    }
    let a = this.active.get(key);
    if (!a) {
      if (!sig.active) return;
      // A device switched off after class (or not switched on yet) is not a fault: for these rules only a
      // condition that begins during class starts an alert.
      if (rule.startsInClass && rule.when === 'teaching' && !this.opts.teaching(sig.school, sig.atMs)) return;
      a = this.create(key, sig, rule, sig.atMs);
      this.active.set(key, a);
    }
    if (sig.message) a.message = sig.message;
    if (sig.details) a.details = sig.details;
    if (a.raw === sig.active) return;
    a.raw = sig.active;
    a.changes.push(sig.atMs);
    a.changes = a.changes.filter((t) => sig.atMs - t <= this.opts.flap.windowS * 1000);
    if (a.changes.length >= this.opts.flap.changes) a.flapping = true;
    if (sig.active) {
      a.clearSinceMs = null;
      // Back within its hysteresis: reminders resume.
      if (a.state === 'firing' && rule.renotifyS > 0 && a.notifiedAtMs !== null)
        this.wake(a.notifiedAtMs + rule.renotifyS * 1000);
      // The grace period starts when the condition did (not at the next tick), if it counts at that moment — or
      // in any case when it counts class time across breaks (it then begins with the next class).
      if (
        a.state === 'pending' &&
        (rule.when === 'always' || pausesInBreaks(rule) || this.opts.teaching(a.school, sig.atMs))
      ) {
        a.pendingSinceMs = sig.atMs;
        this.wake(this.dueMs(a, rule));
      }
    } else if (a.state === 'firing') {
      a.clearSinceMs = sig.atMs;
      this.wake(sig.atMs + this.clearForS(a, rule) * 1000);
    } else this.wake(sig.atMs); // a pending alert whose condition cleared is dropped at the next tick
    this.version++;
  }

  /** Advances the clock: grace periods, inhibition, resolution, reminders, silences ending, group flushes. */
  tick(now: number): Notification[] {
    this.nextWakeMs = Number.POSITIVE_INFINITY;
    // Inhibition first (a child inhibited now must not fire in this tick) and last (a parent resolved in this
    // tick releases its children now).
    this.inhibit(now);
    for (const a of [...this.active.values()]) {
      const rule = this.opts.rules[a.rule];
      if (a.flapping) {
        const quietAt = (a.changes.at(-1) ?? 0) + this.opts.flap.windowS * 1000 + 1;
        if (now >= quietAt) {
          a.flapping = false;
          a.changes = [];
        } else this.wake(quietAt);
      }
      if (a.state === 'pending') {
        if (!a.raw) {
          this.active.delete(a.key); // never fired: nothing to tell anyone
          this.version++;
          continue;
        }
        const counting = rule.when === 'always' || this.opts.teaching(a.school, now);
        if (!counting) {
          // A break pauses a grace that counts class time across breaks; it resets any other.
          if (pausesInBreaks(rule)) continue;
          if (a.pendingSinceMs !== null) this.version++;
          a.pendingSinceMs = null;
          continue;
        }
        if (a.pendingSinceMs === null) {
          a.pendingSinceMs = now;
          this.version++;
        }
        if (a.inhibitedBy) continue;
        const due = this.dueMs(a, rule);
        if (now < due) {
          this.wake(due);
          continue;
        }
        this.fire(a, now);
        continue;
      }
      if (a.state === 'firing') {
        if (!a.raw) {
          if (a.clearSinceMs === null) continue;
          const resolveAt = a.clearSinceMs + this.clearForS(a, rule) * 1000;
          if (now >= resolveAt) {
            // Whoever was told it broke is told it is fixed, silence or not.
            if (a.notifiedAtMs !== null) this.notify(a, 'resolved', now);
            this.close(a, now);
          } else this.wake(resolveAt);
          continue;
        }
        // Reminders and owed notifications wait for class too: no pages at night about a classroom.
        const quiet =
          this.opts.silenced(a, now) || (rule.when === 'teaching' && !this.opts.teaching(a.school, now));
        const silenced = quiet;
        if (a.owedFiring && !silenced && !a.inhibitedBy) {
          a.owedFiring = false;
          this.notify(a, 'firing', now);
        } else if (rule.renotifyS > 0 && a.notifiedAtMs !== null && a.ackedAtMs === null) {
          const remindAt = a.notifiedAtMs + rule.renotifyS * 1000;
          if (now < remindAt) this.wake(remindAt);
          else if (!silenced && !a.inhibitedBy) this.notify(a, 'reminder', now);
        }
      }
    }
    this.inhibit(now);
    return this.flush(now);
  }

  private wake(atMs: number): void {
    if (atMs < this.nextWakeMs) this.nextWakeMs = atMs;
  }

  /**
   * When a pending alert's grace ends: `forS` after its clock started, counted in class time across breaks for a
   * rule that pauses in them.
   */
  private dueMs(a: Alert, rule: Rule): number {
    const since = a.pendingSinceMs ?? Number.POSITIVE_INFINITY;
    return pausesInBreaks(rule)
      ? this.opts.teachingDeadline(a.school, since, rule.forS * 1000)
      : since + rule.forS * 1000;
  }

  /** Hysteresis: how long a firing alert's condition must stay clear (a quiet flap window when flapping). */
  private clearForS(a: Alert, rule: Rule): number {
    return a.flapping ? Math.max(rule.resolveAfterS, this.opts.flap.windowS) : rule.resolveAfterS;
  }

  private fire(a: Alert, now: number): void {
    a.state = 'firing';
    a.firingAtMs = now;
    this.version++;
    if (this.opts.silenced(a, now)) a.owedFiring = true;
    else this.notify(a, 'firing', now);
  }

  private inhibit(now: number): void {
    const parents = new Map<string, Alert>();
    // A parent inhibits until it is resolved (through its hysteresis), not merely until its condition clears.
    for (const a of this.active.values())
      if (a.rule === PARENT_RULE && (a.state === 'firing' || (a.state === 'pending' && a.raw)))
        parents.set(a.school, a);
    for (const p of parents.values()) p.affected = [];
    for (const a of this.active.values()) {
      if (!CHILD_RULES.has(a.rule)) continue;
      const p = parents.get(a.school);
      if (p) {
        if (a.inhibitedBy !== p.id) {
          a.inhibitedBy = p.id;
          this.version++;
        }
        if (a.raw && a.device) p.affected.push(a.device);
      } else if (a.inhibitedBy) {
        // The parent is gone: give the device its own grace from now to reconnect before it pages.
        a.inhibitedBy = null;
        if (a.state === 'pending' && a.raw) {
          a.pendingSinceMs = now;
          this.wake(this.dueMs(a, this.opts.rules[a.rule]));
        }
        this.version++;
      }
    }
    for (const p of parents.values()) p.affected.sort();
  }

  ack(id: string, by: string, now: number): Alert | undefined {
    for (const a of this.active.values()) {
      if (a.id !== id) continue;
      a.ackedAtMs = now;
      a.ackedBy = by;
      this.version++;
      return a;
    }
    return undefined;
  }

  private create(
    key: string,
    sig: {
      rule: RuleName;
      school: string;
      device?: string | undefined;
      subject?: string | undefined;
      message?: string;
      details?: Alert['details'];
    },
    rule: Rule,
    now: number,
  ): Alert {
    this.version++;
    return {
      id: idOf(`${key}|${now}`),
      key,
      rule: sig.rule,
      severity: rule.severity,
      school: sig.school,
      device: sig.device ?? null,
      subject: sig.subject ?? null,
      state: 'pending',
      raw: false,
      startedAtMs: now,
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
      affected: [],
      message: sig.message ?? '',
      details: sig.details ?? {},
    };
  }

  private close(a: Alert, now: number): void {
    a.state = 'resolved';
    a.resolvedAtMs = now;
    this.active.delete(a.key);
    this.history.push(a);
    if (this.history.length > this.opts.historyMax)
      this.history.splice(0, this.history.length - this.opts.historyMax);
    this.version++;
  }

  private notify(a: Alert, kind: NotificationItem['kind'], now: number): void {
    if (kind !== 'resolved') {
      a.notifiedAtMs = now;
      const renotifyS = this.opts.rules[a.rule].renotifyS;
      if (renotifyS > 0 && a.state === 'firing') this.wake(now + renotifyS * 1000);
    }
    let q = this.queue.get(a.school);
    const started = Math.min(now, kind === 'firing' ? a.startedAtMs : now);
    if (!q) {
      q = { firstMs: started, items: [] };
      this.queue.set(a.school, q);
    }
    q.firstMs = Math.min(q.firstMs, started);
    // A snapshot: the alert goes on changing while the message waits.
    q.items.push({ kind, alert: structuredClone(a) });
    this.version++;
  }

  private flush(now: number): Notification[] {
    const out: Notification[] = [];
    const waitMs = this.opts.groupWaitS * 1000;
    for (const [school, q] of this.queue) {
      if (now < q.firstMs + waitMs) {
        this.wake(q.firstMs + waitMs);
        continue;
      }
      // Take along the school's alerts of the same rules that would fire within the group wait (classrooms
      // that died with the others; their graces are shortened by at most the group wait) — only if they would
      // really fire: still in class when their grace ends.
      const rules = new Set(q.items.filter((i) => i.kind === 'firing').map((i) => i.alert.rule));
      for (const a of this.active.values()) {
        if (
          a.school !== school ||
          !rules.has(a.rule) ||
          a.state !== 'pending' ||
          !a.raw ||
          a.inhibitedBy ||
          a.pendingSinceMs === null
        )
          continue;
        const rule = this.opts.rules[a.rule];
        const due = this.dueMs(a, rule);
        if (due > now + waitMs) continue;
        if (rule.when === 'teaching' && !this.opts.teaching(a.school, due)) continue;
        this.fire(a, now);
      }
      this.queue.delete(school);
      // An outage's message names the devices affected by the time it is sent, not only when it fired.
      for (const item of q.items) {
        const live = this.active.get(item.alert.key);
        if (item.kind !== 'resolved' && live?.id === item.alert.id) item.alert.affected = [...live.affected];
      }
      out.push({ school, atMs: now, items: q.items });
    }
    return out;
  }
}
