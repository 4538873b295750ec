import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ManualAcks } from './mqtt-acks.js';
import { type PublishSink, tapStreamBuilder } from './mqtt-tap.js';
import { redactUrl, scrubText, secret, urlWithSecrets } from './redact.js';

/**
 * One MQTT connection with the behaviour every process of ours needs, on any broker (aedes, Mosquitto, EMQX):
 * - reconnects with exponential back-off and full jitter, so 30,000 agents do not reconnect in lockstep after a
 *   broker restart (mqtt.js alone retries at a fixed period);
 * - `protocol: auto` tries MQTT 5 and falls back to 3.1.1 when the broker answers CONNACK 1 (unacceptable
 *   protocol version, MQTT 3.1.1 §3.2.2.3) — aedes does, Mosquitto and EMQX speak 5;
 * - a last will and a birth message published on every (re)connect, before anything else.
 */
export const mqttConfigSchema = z
  .strictObject({
    url: urlWithSecrets(
      z.string().regex(/^(mqtt|mqtts|tcp|tls|ssl|ws|wss):\/\/[^\s]+$/, {
        message: 'must be mqtt://host:port or mqtts://host:port',
      }),
    )
      .default('mqtt://127.0.0.1:1883')
      .describe('Broker URL: `mqtt://host:1883`, or `mqtts://host:8883` for TLS.'),
    username: z.string().optional().describe('MQTT username (see `npm run broker -- users add`).'),
    password: secret(z.string()).optional().describe('MQTT password.'),
    clientId: z
      .string()
      .optional()
      .describe('Client id; defaults to the username (the broker requires that prefix).'),
    caFile: z.string().optional().describe('PEM CA bundle to verify an `mqtts://` broker with a private CA.'),
    keepaliveS: z
      .number()
      .int()
      .min(1)
      .max(3_600)
      .default(30)
      .describe('MQTT keepalive; the broker declares the client dead after 1.5× this (MQTT-3.1.2-24).'),
    protocol: z
      .enum(['auto', '5', '3.1.1'])
      .default('auto')
      .describe('`auto` tries MQTT 5 and falls back to 3.1.1.'),
    connectTimeoutMs: z
      .number()
      .int()
      .min(100)
      .default(10_000)
      .describe('Time allowed for CONNECT → CONNACK.'),
    reconnectMinMs: z
      .number()
      .int()
      .min(10)
      .default(1_000)
      .describe('First reconnect delay; doubles per failure.'),
    reconnectMaxMs: z.number().int().min(10).default(60_000).describe('Longest reconnect delay.'),
  })
  .prefault({});
export type MqttConfig = z.infer<typeof mqttConfigSchema>;

export interface OutgoingMessage {
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain: boolean;
}

export interface MqttSessionOptions {
  log: Logger;
  /** Overrides config.clientId. */
  clientId?: string;
  will?: OutgoingMessage;
  /** Published on every connect before the 'connect' event. */
  birth?: () => OutgoingMessage | undefined;
  /** Keep the session (and queued QoS 1 messages) across reconnects, for this long on MQTT 5 brokers. */
  persistentSession?: boolean;
  sessionExpiryS?: number;
  /**
   * Acknowledge QoS 1 messages only when the owner has finished with them (see mqtt-acks.ts); its bound is
   * advertised to MQTT 5 brokers as Receive Maximum.
   */
  acks?: ManualAcks;
  /**
   * mqtt-packet's table of the 65,536 two-byte numbers, pre-encoded for packet ids and lengths: 6.6 MB of heap
   * in 65,536 Buffers, made at the first packet. Default on; `false` encodes each number when it is sent, for a
   * process that sends a few messages a minute (the classroom agent). The table is per process: `false` turns it
   * off for every client in the process that has not built it yet.
   */
  numberCache?: boolean;
  /**
   * Incoming QoS 0/1 PUBLISH packets go to this sink, decoded below mqtt.js (mqtt-tap.ts), instead of the
   * 'message' event; mqtt.js keeps the rest of the session. For a process that receives many small messages
   * (the collector).
   */
  tap?: { sink: PublishSink; maxPayloadBytes: number };
}

/** Full-jitter exponential back-off (AWS Architecture Blog, "Exponential Backoff And Jitter"). */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(minMs / 2 + random() * (cap - minMs / 2));
}

type MqttSessionEvents = {
  connect: [info: { protocolVersion: 4 | 5; sessionPresent: boolean }];
  disconnect: [why: string];
  message: [topic: string, payload: Buffer, packet: IPublishPacket];
};

export class MqttSession extends EventEmitter<MqttSessionEvents> {
  private client: MqttClient | undefined;
  private stopping = false;
  private paused = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private protocolVersion: 4 | 5;
  private connectedOnce = false;

  constructor(
    readonly config: MqttConfig,
    private readonly opts: MqttSessionOptions,
  ) {
    super();
    this.protocolVersion = config.protocol === '3.1.1' ? 4 : 5;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  get protocol(): 4 | 5 {
    return this.protocolVersion;
  }

  /** Starts connecting and returns at once; 'connect' fires when the broker accepts. */
  start(): void {
    this.stopping = false;
    this.open();
  }

  /** Resolves on the next (or current) connection; rejects after timeoutMs. */
  waitConnected(timeoutMs = 15_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('connect', on);
        reject(new Error(`MQTT ${redactUrl(this.config.url)}: not connected after ${timeoutMs} ms`));
      }, timeoutMs);
      const on = () => {
        clearTimeout(t);
        resolve();
      };
      this.once('connect', on);
    });
  }

  private clientOptions(): IClientOptions {
    const c = this.config;
    const clientId = this.opts.clientId ?? c.clientId ?? c.username ?? `cfm-${process.pid}`;
    const o: IClientOptions = {
      clientId,
      protocolVersion: this.protocolVersion,
      keepalive: c.keepaliveS,
      connectTimeout: c.connectTimeoutMs,
      reconnectPeriod: 0, // we schedule reconnects ourselves, with jitter
      clean: !this.opts.persistentSession,
      queueQoSZero: false,
      resubscribe: false,
      writeCache: this.opts.numberCache ?? true,
    };
    // mqtt.js traces every packet through the `debug` library even when no DEBUG is set (1.5 % of the
    // collector's CPU, #18): a no-op unless its trace is asked for (DEBUG=mqttjs*).
    if (!process.env.DEBUG?.includes('mqttjs')) o.log = () => {};
    if (this.opts.persistentSession && this.protocolVersion === 5) {
      o.properties = { sessionExpiryInterval: this.opts.sessionExpiryS ?? 86_400 };
    }
    if (this.opts.acks && this.protocolVersion === 5) {
      // MQTT-3.3.4-9: the broker sends no more unacknowledged QoS 1 messages than this.
      o.properties = { ...o.properties, receiveMaximum: this.opts.acks.maxUnacked };
    }
    if (c.username !== undefined) o.username = c.username;
    if (c.password !== undefined) o.password = c.password;
    if (c.caFile) o.ca = readFileSync(c.caFile);
    if (this.opts.will) o.will = { ...this.opts.will, payload: Buffer.from(this.opts.will.payload) };
    return o;
  }

  private open(): void {
    const log = this.opts.log;
    const tap = this.opts.tap;
    const client = mqtt.connect(this.config.url, {
      ...this.clientOptions(),
      manualConnect: tap !== undefined,
    });
    if (tap) {
      tapStreamBuilder(client, { protocolVersion: this.protocolVersion, ...tap });
      client.connect();
    }
    this.client = client;
    this.opts.acks?.attach(client); // before any packet can arrive: connect() only starts connecting
    let lastError = '';
    client.on('connect', (connack) => {
      // A CONNACK read after stop() or pause() began ending this client: mqtt.js ended it without closing its
      // connection (it was not connected yet), and its store is closed — a publish now would throw inside mqtt.js
      // (an uncaught TypeError that ended the process). Close the connection: the broker must not think a
      // stopped or paused client is still there.
      if (client !== this.client || this.stopping || this.paused || client.disconnecting) {
        client.stream?.destroy();
        return;
      }
      this.attempt = 0;
      this.connectedOnce = true;
      const birth = this.opts.birth?.();
      if (birth) client.publish(birth.topic, birth.payload, { qos: birth.qos, retain: birth.retain });
      log.info(
        {
          url: redactUrl(this.config.url),
          protocol: this.protocolVersion,
          sessionPresent: connack.sessionPresent,
        },
        'mqtt connected',
      );
      this.emit('connect', { protocolVersion: this.protocolVersion, sessionPresent: connack.sessionPresent });
    });
    client.on('message', (topic, payload, packet) => this.emit('message', topic, payload, packet));
    client.on('error', (err) => {
      lastError = scrubText(err.message);
      const code = (err as { code?: number }).code;
      if (code === 1 && this.protocolVersion === 5 && this.config.protocol === 'auto') {
        log.info({ url: redactUrl(this.config.url) }, 'broker does not speak MQTT 5: using 3.1.1');
        this.protocolVersion = 4;
        this.attempt = -1; // retry at once
      }
    });
    client.on('close', () => {
      if (client !== this.client) return;
      const wasConnected = this.connectedOnce;
      this.connectedOnce = false;
      if (wasConnected) this.emit('disconnect', lastError || 'connection closed');
      if (this.stopping || this.paused) return;
      client.removeAllListeners();
      client.on('error', () => {});
      client.end(true);
      // A protocol fallback retries at once and is not worth a warning (it was logged at info).
      const fallback = this.attempt < 0;
      const delay = fallback
        ? 0
        : backoffDelayMs(this.attempt, this.config.reconnectMinMs, this.config.reconnectMaxMs);
      this.attempt = Math.max(0, this.attempt) + 1;
      if (!fallback) {
        log.warn(
          { url: redactUrl(this.config.url), why: lastError || 'connection closed', retryInMs: delay },
          'mqtt disconnected',
        );
      }
      this.timer = setTimeout(() => this.open(), delay);
    });
  }

  /** QoS 1 resolves on PUBACK. Rejects at once when not connected, so the caller can spool instead. */
  publish(m: OutgoingMessage): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error('not connected'));
    return new Promise((resolve, reject) =>
      client.publish(m.topic, m.payload, { qos: m.qos, retain: m.retain }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }

  async subscribe(filter: string, qos: 0 | 1 = 1): Promise<number> {
    const client = this.client;
    if (!client?.connected) throw new Error('not connected');
    const granted = await client.subscribeAsync(filter, { qos });
    const g = granted[0]?.qos ?? 128;
    if (g === 128) throw new Error(`broker refused subscription ${filter}`);
    return g;
  }

  /**
   * Disconnects cleanly and stays away until resume(): with a persistent session the broker queues QoS 1
   * messages meanwhile (MQTT-3.1.2-5). How a consumer applies backpressure without losing anything.
   */
  async pause(): Promise<void> {
    if (this.paused || this.stopping) return;
    this.paused = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    if (client) await this.end(client, 'pause');
  }

  resume(): void {
    if (!this.paused || this.stopping) return;
    this.paused = false;
    this.attempt = 0;
    this.open();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * A clean disconnect (DISCONNECT, then the broker closes), given `connectTimeoutMs` at most: mqtt.js waits for
   * the connection to close, and a broker that does not close it (or a DISCONNECT mqtt.js kept back because it
   * had not read the CONNACK yet) would hold a stop or a pause forever. Then the connection is closed from our
   * side; the broker sends the will only if it never read the DISCONNECT.
   */
  private async end(client: MqttClient, why: 'pause' | 'stop'): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = await Promise.race([
      client.endAsync(false).then(
        () => false,
        () => true,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.config.connectTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!gaveUp) return;
    this.opts.log.warn(
      { url: redactUrl(this.config.url), why, waitedMs: this.config.connectTimeoutMs },
      'mqtt: the connection did not close after DISCONNECT; closing it',
    );
    client.stream?.destroy();
  }

  /** Publishes `last` (if connected), then disconnects cleanly so the broker does not send the will. */
  async stop(last?: OutgoingMessage): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    const client = this.client;
    if (!client) return;
    if (last && client.connected) {
      await this.publish(last).catch(() => {});
    }
    await this.end(client, 'stop');
    this.client = undefined;
  }
}
