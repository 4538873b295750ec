import type { Logger } from 'pino';
import { z } from 'zod';
import type { MqttSession, OutgoingMessage } from '../common/mqtt.js';
import { Spool } from './spool.js';

/**
 * Store-and-forward publishing, shared by the classroom agent and the SNMP poller:
 *
 *   message ─► (connected and queue empty?) ─► publish QoS 1 ──► broker
 *                      └─ otherwise ─► spool (disk, bounded) ─► replay in order at replayRatePerSec
 *
 * A message leaves the spool only after the broker's PUBACK, so a crash or a broker restart loses nothing; a
 * duplicate after a lost PUBACK lands on the same InfluxDB series and timestamp, so it is harmless. When the
 * spool is full its oldest segment is dropped and counted.
 */
export const spoolConfigSchema = z
  .strictObject({
    dir: z.string().describe('Store-and-forward queue folder.'),
    maxBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .default(64 * 1024 * 1024)
      .describe('Queue bound; when full the oldest messages are dropped and counted.'),
  })
  .describe('Where messages wait while the broker is unreachable.');

export interface PublisherStats {
  published: number;
  spooled: number;
  replayed: number;
  queued: number;
  droppedOldest: number;
}

/** Stats of a publisher that has not started. */
export const NO_PUBLISHER_STATS: Readonly<PublisherStats> = {
  published: 0,
  spooled: 0,
  replayed: 0,
  queued: 0,
  droppedOldest: 0,
};

export class ReliablePublisher {
  private readonly spool: Spool;
  private pumping: Promise<void> | undefined;
  private stopping = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly counts = { published: 0, spooled: 0, replayed: 0 };

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

  /** Opens the spool (replaying what a previous run left) and replays on every (re)connect. */
  async open(): Promise<void> {
    await this.spool.open();
    if (this.spool.size > 0)
      this.opts.log.info({ queued: this.spool.size }, 'messages queued from before: will replay');
    this.session.on('connect', () => this.pump());
  }

  async send(m: OutgoingMessage): Promise<void> {
    if (this.session.connected && this.spool.size === 0 && !this.pumping) {
      try {
        await this.session.publish(m);
        this.counts.published++;
        return;
      } catch {
        // fall through to the spool
      }
    }
    await this.spool.append({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain });
    this.counts.spooled++;
    this.pump();
  }

  /** Replays the spool in order, one message per PUBACK, at replayRatePerSec. */
  private pump(): void {
    if (this.pumping || this.stopping) return;
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
          } catch {
            break; // disconnected: the next 'connect' resumes
          }
          await this.spool.ack(1);
          this.counts.replayed++;
          const wait = gapMs - (performance.now() - started);
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
      } catch (err) {
        // A spool that cannot be read or acknowledged (disk full, file changed underneath) must not kill the
        // process: keep messages flowing to the spool and try the replay again later.
        this.opts.log.error({ err }, 'spool replay failed; retrying in 30 s');
        this.retryTimer = setTimeout(() => this.pump(), 30_000);
      } finally {
        this.pumping = undefined;
      }
      // Messages spooled while pumping: go again.
      if (!this.stopping && session.connected && this.spool.size > 0) this.pump();
    })();
  }

  /** Waits for a replay in progress to stop, then closes the spool (what is queued stays for the next run). */
  async close(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.retryTimer);
    await this.pumping;
    await this.spool.close();
  }
}
