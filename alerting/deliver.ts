import type { Logger } from 'pino';
import { scrubText, secretValues } from '../common/redact.js';
import { regionWithin } from '../contracts/ids.js';
import { type Channel, channelSchema, DeliveryError, send } from './channels/index.js';
import type { Notification } from './engine.js';
import { RANK, type Rendered } from './render.js';

/**
 * Delivery of rendered notifications on the configured channels (channels/): each (channel, message) is
 * retried with exponential back-off; every outcome is recorded (the API lists failures, /metrics counts them).
 */

/** Whether a channel wants a notification (its regions and minimum severity). */
export function wants(
  channel: Channel,
  regionPath: string | undefined,
  r: Rendered,
  resolvedOnly: boolean,
): boolean {
  if (
    channel.regions &&
    !channel.regions.some((scope) => regionPath !== undefined && regionWithin(regionPath, scope))
  )
    return false;
  // A resolve goes where its alert went: a channel above its severity never heard of it.
  return RANK[resolvedOnly ? r.resolvedSeverity : r.severity] >= RANK[channel.minSeverity];
}

export interface DeliveryRecord {
  id: string;
  channel: string;
  school: string;
  title: string;
  createdAtMs: number;
  attempts: number;
  status: 'pending' | 'delivered' | 'failed';
  lastError: string | null;
  nextAttemptAtMs: number | null;
  /** The message, kept while pending so a restart can finish the delivery. */
  message?: Rendered | undefined;
}

/**
 * Sends each (channel, message) with retries: waits 1 s, 2 s, 4 s … up to `maxDelayMs`, at most `maxAttempts`
 * times; a permanent refusal (4xx, a bad address) fails at once. Records every delivery for the API.
 */
export class Deliverer {
  readonly records: DeliveryRecord[] = [];
  private seq = 0;
  private timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  delivered = 0;
  failed = 0;

  constructor(
    private readonly opts: {
      log: Logger;
      maxAttempts: number;
      minDelayMs: number;
      maxDelayMs: number;
      keep: number;
      send?: typeof send;
      /** Per attempt (default 10 s). */
      timeoutMs?: number;
      onChange?: () => void;
    },
  ) {}

  deliver(channels: readonly Channel[], n: Notification, r: Rendered, regionPath: string | undefined): void {
    const resolvedOnly = n.items.every((i) => i.kind === 'resolved');
    for (const c of channels) {
      if (!wants(c, regionPath, r, resolvedOnly)) continue;
      const rec: DeliveryRecord = {
        id: `d${Date.now().toString(36)}-${++this.seq}`,
        channel: c.name,
        school: n.school,
        title: r.title,
        createdAtMs: Date.now(),
        attempts: 0,
        status: 'pending',
        lastError: null,
        nextAttemptAtMs: Date.now(),
        message: r,
      };
      this.records.push(rec);
      if (this.records.length > this.opts.keep) this.records.splice(0, this.records.length - this.opts.keep);
      void this.attempt(c, r, rec);
    }
  }

  private async attempt(c: Channel, r: Rendered, rec: DeliveryRecord): Promise<void> {
    if (this.stopped) return;
    rec.attempts++;
    try {
      await (this.opts.send ?? send)(c, r, { timeoutMs: this.opts.timeoutMs ?? 10_000, now: Date.now() });
      rec.status = 'delivered';
      rec.lastError = null;
      rec.nextAttemptAtMs = null;
      rec.message = undefined;
      this.delivered++;
    } catch (e) {
      const raw = e instanceof DeliveryError ? e : new DeliveryError((e as Error).message, true);
      // The API lists this and the log keeps it: fetch and nodemailer quote the URL or server they failed on.
      const err = new DeliveryError(scrubText(raw.message, secretValues(channelSchema, c)), raw.retry);
      rec.lastError = err.message;
      if (this.stopped) return; // stopping: no new timers; the record stays pending in the state file
      if (!err.retry || rec.attempts >= this.opts.maxAttempts) {
        rec.status = 'failed';
        rec.nextAttemptAtMs = null;
        rec.message = undefined;
        this.failed++;
        this.opts.log.warn(
          { channel: c.name, school: rec.school, attempts: rec.attempts, err: err.message },
          'notification not delivered',
        );
      } else {
        const delay = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** (rec.attempts - 1));
        rec.nextAttemptAtMs = Date.now() + delay;
        const t = setTimeout(() => {
          this.timers.delete(t);
          void this.attempt(c, r, rec);
        }, delay);
        t.unref();
        this.timers.add(t);
      }
    }
    this.opts.onChange?.();
  }

  /** After a restart: finishes deliveries that were still pending, on channels that still exist. */
  resume(records: DeliveryRecord[], channels: readonly Channel[]): void {
    for (const rec of records) {
      const c = channels.find((x) => x.name === rec.channel);
      this.records.push(rec);
      if (rec.status !== 'pending') continue;
      if (!c || !rec.message) {
        Object.assign(rec, {
          status: 'failed',
          lastError: 'channel no longer configured',
          nextAttemptAtMs: null,
          message: undefined,
        });
        continue;
      }
      void this.attempt(c, rec.message, rec);
    }
    if (this.records.length > this.opts.keep) this.records.splice(0, this.records.length - this.opts.keep);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
