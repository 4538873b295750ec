import type { Logger } from 'pino';
import { z } from 'zod';
import { backoffDelayMs, type MqttSession, type OutgoingMessage } from '../common/mqtt.js';
import { Spool } from './spool.js';

/**
 * Store-and-forward publishing, shared by the classroom agent and the SNMP poller:
 *
 *   message ─► (connected and queue empty?) ─► publish QoS 1 ──► broker
 *                      └─ otherwise ─► spool (disk, bounded) ─► replay in order at replayRatePerSec
 *
 * A message leaves the spool only after the broker's PUBACK, so a crash or a broker restart loses nothing; a
 * duplicate after a lost PUBACK lands on the same InfluxDB series and timestamp, so it is harmless.
 *
 * Full spool: the oldest messages are dropped one at a time to make room (spool.ts, "Bound"), counted
 * (`droppedOldest`), and logged twice per episode — when the first message goes, and with the count when the
 * spool next empties (or the publisher closes).
 *
 * Failing spool (a full disk, the folder removed or replaced by a file, a segment changed underneath): nothing
 * is appended to or replayed from it until it is re-opened, which is retried with exponential back-off and full
 * jitter from 1 s up to `spool.retryMaxMs` — never at once, so a spool that keeps failing costs a few log lines
 * and no CPU. Meanwhile messages go straight to the broker while connected (out of order with what was queued);
 * while it is away they are lost and counted (`lost`). Re-opening rescans the folder: what was queued and is no
 * longer there is counted in `lost` too. A broker that refuses a queued message without dropping the
 * connection is retried on the same back-off; a message it refuses 5 times (or closes the connection on 10
 * times in a row) is dropped, counted (`lost`, `poisoned`) and logged, so it cannot block the queue for good.
 */
export const spoolConfigSchema = z
  .strictObject({
    dir: z.string().describe('Store-and-forward queue folder.'),
    maxBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .default(64 * 1024 * 1024)
      .describe(
        'Bound on the queue folder (its segment files), default 64 MiB. When full, the oldest messages are dropped one at a time to make room, counted, and logged once per episode; the classroom agent reports the count in telemetry `spoolDropped`. Segment files are at most 1 MiB and at most 1/16 of this bound, so the queue holds at least 15/16 of it. Prevents a long outage from filling the disk, and a bound below the segment size from emptying the whole queue at each overflow.',
      ),
    retryMaxMs: z
      .number()
      .int()
      .min(1_000)
      .max(3_600_000)
      .default(60_000)
      .describe(
        'Longest wait between attempts to use a spool that failed (a full disk, its folder removed or replaced by a file), default 60 s; attempts start at 1 s and double, with jitter, and meanwhile messages go straight to the broker when connected. Prevents a failing spool from spinning (retrying at once wrote 120,729 log lines and burned 21 CPU-seconds in 30 s).',
      ),
  })
  .describe('Where messages wait while the broker is unreachable.');

export interface PublisherStats {
  published: number;
  spooled: number;
  replayed: number;
  queued: number;
  /** Queued messages dropped, oldest first, to make room in a full spool. */
  droppedOldest: number;
  /**
   * Messages lost: queued in a spool folder that went away, sent while the spool failed and the broker was away,
   * or queued messages the broker never accepted (`poisoned`).
   */
  lost: number;
  /** Of `lost`: queued messages dropped after the broker refused them (or cut the connection) every time. */
  poisoned: number;
  /** Failed attempts to use the spool (each one waited out its back-off). */
  spoolFailures: number;
}

/** Stats of a publisher that has not started. */
export const NO_PUBLISHER_STATS: Readonly<PublisherStats> = {
  published: 0,
  spooled: 0,
  replayed: 0,
  queued: 0,
  droppedOldest: 0,
  lost: 0,
  poisoned: 0,
  spoolFailures: 0,
};

/** First back-off after a failure; it doubles up to `spool.retryMaxMs`. */
const RETRY_MIN_MS = 1_000;
/**
 * Tries of one queued message before it is dropped: refused on a live connection (each after a back-off), or
 * in flight when the broker closed the connection (each after a reconnect). A broker that is merely away is
 * never counted: nothing is tried while disconnected.
 */
const MAX_HEAD_REFUSALS = 5;
const MAX_HEAD_CUT_OFFS = 10;

export class ReliablePublisher {
  private readonly spool: Spool;
  /** A replay or a re-open in progress; at most one at a time. */
  private pumping: Promise<void> | undefined;
  private stopping = false;
  /** Set while waiting out a back-off: nothing is replayed or re-opened before it fires. */
  private retryTimer: NodeJS.Timeout | undefined;
  /** Consecutive failures (spool or refused publish); reset by success. */
  private failures = 0;
  /** The spool failed: it is not used until re-opened. `queued`: what it held by then. */
  private broken: { queued: number; lostBefore: number } | undefined;
  /** Messages are being dropped from a full spool: since when, and the drop count at its start. */
  private dropEpisode: { fromDropped: number; sinceMs: number } | undefined;
  private readonly counts = { published: 0, spooled: 0, replayed: 0, lost: 0, spoolFailures: 0, poisoned: 0 };
  /** Consecutive tries of the queue's head that the broker refused, or cut the connection on. */
  private headRefusals = 0;
  private headCutOffs = 0;

  constructor(
    private readonly session: MqttSession,
    private readonly opts: {
      log: Logger;
      spool: z.infer<typeof spoolConfigSchema>;
      replayRatePerSec: number;
    },
  ) {
    this.spool = new Spool({ dir: opts.spool.dir, maxBytes: opts.spool.maxBytes });
  }

  stats(): PublisherStats {
    const s = this.spool.stats();
    return { ...this.counts, queued: s.queued, droppedOldest: s.droppedOldest };
  }

  /** Messages this publisher could not keep for delivery: dropped from a full spool, or lost with a failing one. */
  get undeliverable(): number {
    return this.spool.stats().droppedOldest + this.counts.lost;
  }

  /** Opens the spool (replaying what a previous run left) and replays on every (re)connect. */
  async open(): Promise<void> {
    await this.spool.open();
    if (this.spool.size > 0)
      this.opts.log.info({ queued: this.spool.size }, 'messages queued from before: will replay');
    this.session.on('connect', () => this.pump());
  }

  async send(m: OutgoingMessage): Promise<void> {
    const session = this.session;
    if (!this.broken) {
      if (session.connected && this.spool.size === 0 && !this.pumping && !this.retryTimer) {
        try {
          await session.publish(m);
          this.counts.published++;
          return;
        } catch {
          // fall through to the spool
        }
      }
      const dropped = this.spool.stats().droppedOldest;
      try {
        await this.spool.append({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain });
        this.counts.spooled++;
        // Queued while a replay found the spool failing: the re-open counts it if it is gone by then.
        const broken = this.broken as ReliablePublisher['broken']; // (set by a replay during the await)
        if (broken) broken.queued++;
        this.noteDrops(dropped);
        this.pump();
        return;
      } catch (err) {
        // A message the spool refuses by its shape or size (the caller's error) is not a spool failure.
        if (err instanceof TypeError || err instanceof RangeError) throw err;
        this.failed(err, 'spool append failed');
      }
    }
    // The spool is failing: straight to the broker, or lost.
    if (session.connected) {
      try {
        await session.publish(m);
        this.counts.published++;
        return;
      } catch {
        // lost below
      }
    }
    this.counts.lost++;
  }

  /** Logs the start of a drop episode (once); `before`: droppedOldest before the append. */
  private noteDrops(before: number): void {
    const dropped = this.spool.stats().droppedOldest;
    if (dropped === before || this.dropEpisode) return;
    this.dropEpisode = { fromDropped: before, sinceMs: Date.now() };
    const { maxBytes } = this.spool.limits;
    this.opts.log.warn(
      { dir: this.opts.spool.dir, maxBytes },
      'spool full: dropping the oldest messages to make room (the count is logged when it empties)',
    );
  }

  /** Ends a drop episode with one line carrying its count: when the spool has emptied, or at close. */
  private endDropEpisode(force: boolean): void {
    const e = this.dropEpisode;
    if (!e || (!force && this.spool.size > 0)) return;
    this.dropEpisode = undefined;
    const dropped = this.spool.stats().droppedOldest - e.fromDropped;
    this.opts.log.warn(
      { dir: this.opts.spool.dir, dropped, forS: Math.round((Date.now() - e.sinceMs) / 1000) },
      `spool was full: ${dropped} oldest messages dropped`,
    );
  }

  /** A spool operation failed: stop using the spool and try to re-open it after a back-off. */
  private failed(err: unknown, what: string): void {
    // Appends queued behind the one that failed fail too: one failure, one back-off, one log line.
    if (this.broken && this.retryTimer) return;
    this.broken ??= { queued: this.spool.size, lostBefore: this.counts.lost };
    this.counts.spoolFailures++;
    const delay = this.backoff();
    const log = this.opts.log;
    (this.failures === 1 ? log.error : log.warn).call(
      log,
      { err, dir: this.opts.spool.dir, attempt: this.failures, retryInMs: delay },
      `${what}; messages go straight to the broker meanwhile (lost while it is away); retrying in ${(delay / 1000).toFixed(1)} s`,
    );
  }

  /** Schedules the next attempt after the next back-off delay; returns the delay. */
  private backoff(): number {
    const delay = backoffDelayMs(this.failures, RETRY_MIN_MS, this.opts.spool.retryMaxMs);
    this.failures++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.broken) this.reopen();
      else this.pump();
    }, delay);
    return delay;
  }

  /** Re-opens a failed spool (rescanning its folder), then resumes the replay. */
  private reopen(): void {
    if (this.pumping || this.stopping || !this.broken) return;
    const broken = this.broken;
    this.pumping = (async () => {
      try {
        await this.spool.close().catch(() => undefined);
        await this.spool.open();
      } catch (err) {
        this.failed(err, 'spool still unusable');
        return;
      } finally {
        this.pumping = undefined;
      }
      const vanished = Math.max(0, broken.queued - this.spool.size);
      this.counts.lost += vanished;
      this.broken = undefined;
      this.failures = 0;
      this.opts.log.warn(
        { dir: this.opts.spool.dir, queued: this.spool.size, lost: this.counts.lost - broken.lostBefore },
        'spool usable again; messages lost while it failed are counted',
      );
      this.endDropEpisode(false);
      this.pump();
    })();
  }

  /** Replays the spool in order, one message per PUBACK, at replayRatePerSec. */
  private pump(): void {
    if (this.pumping || this.stopping || this.broken || this.retryTimer) return;
    const session = this.session;
    if (!session.connected || this.spool.size === 0) return;
    const gapMs = 1000 / this.opts.replayRatePerSec;
    this.pumping = (async () => {
      try {
        while (!this.stopping && session.connected && this.spool.size > 0) {
          const [e] = await this.spool.peek(1);
          if (!e) break;
          const started = performance.now();
          try {
            await session.publish({
              topic: e.topic,
              payload: e.payload,
              qos: e.qos,
              retain: e.retain ?? false,
            });
          } catch (err) {
            // Refused on a live connection (an MQTT 5 PUBACK ≥ 0x80: an ACL or credential change): retried after
            // a back-off. Cut off by the broker while it was in flight (aedes on 3.1.1 closes the connection on
            // a refused publish): the next 'connect' resumes. Either way a message the broker will never take
            // must not block the queue behind it for good: after a few tries it is dropped, counted and logged.
            const refused = session.connected;
            const tries = refused ? ++this.headRefusals : ++this.headCutOffs;
            if (tries >= (refused ? MAX_HEAD_REFUSALS : MAX_HEAD_CUT_OFFS)) {
              await this.spool.ack(1);
              this.counts.lost++;
              this.counts.poisoned++;
              this.headRefusals = 0;
              this.headCutOffs = 0;
              this.opts.log.error(
                { err, topic: e.topic.slice(0, 200), tries, refused },
                refused
                  ? 'broker refuses a queued message every time: dropped (counted as lost), the queue goes on'
                  : 'broker closes the connection on a queued message every time: dropped (counted as lost), the queue goes on',
              );
              if (refused) continue;
              return;
            }
            if (refused) {
              const delay = this.backoff();
              this.opts.log.warn(
                { err, topic: e.topic, attempt: this.failures, retryInMs: delay },
                'broker refused a queued message; retrying',
              );
            }
            return;
          }
          await this.spool.ack(1);
          this.counts.replayed++;
          this.failures = 0;
          this.headRefusals = 0;
          this.headCutOffs = 0;
          const wait = gapMs - (performance.now() - started);
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
      } catch (err) {
        // A spool that cannot be read or acknowledged must not kill the process, nor be retried at once.
        this.failed(err, 'spool replay failed');
      } finally {
        this.pumping = undefined;
      }
      this.endDropEpisode(false);
      // A 'connect' that came while this replay was still finishing (a cut-off message being dropped, on a
      // loaded machine slower than a 20 ms reconnect) found it running and did nothing: resume for it. pump()
      // itself checks there is a connection, something queued and no back-off pending.
      this.pump();
    })();
  }

  /** Waits for a replay in progress to stop, then closes the spool (what is queued stays for the next run). */
  async close(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.pumping;
    this.endDropEpisode(true);
    await this.spool.close();
  }
}
