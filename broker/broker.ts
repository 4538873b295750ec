import { readFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import { z } from 'zod';
import { addressKey, FailureLimiter } from '../common/failure-limit.js';
import { FileWatch } from '../common/json-file.js';
import type { Service } from '../common/lifecycle.js';
import { RegistryStore } from '../common/registry/store.js';
import { inShard, type Shard } from '../common/shard.js';
import { MAX_PAYLOAD_BYTES } from '../contracts/messages.js';
import {
  clientIdAllowed,
  filterReceives,
  mayPublish,
  maySubscribe,
  type Principal,
  publishTopicsBySchool,
} from './acl.js';
import { CredentialStore, CredentialsError } from './credentials.js';
import { FrameLimitedConnection, TokenBucket } from './frame-limit.js';

/**
 * The embedded MQTT broker: aedes (MQTT 3.1.1) with all policy in its hooks. Deny by default — a client
 * without valid credentials is refused (CONNACK 4/5), a topic no ACL rule allows is refused (the connection is
 * closed: MQTT 3.1.1 has no per-publish refusal, MQTT-3.3.5-2). Agents and collector use only standard MQTT,
 * so the same deployment can swap this for Mosquitto or EMQX.
 */
const listenerSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('tcp'),
    host: z
      .string()
      .default('127.0.0.1')
      .describe('Bind address. Plain TCP is meant for loopback and development.'),
    port: z.number().int().min(0).max(65_535).default(1883),
  }),
  // No client certificates: the broker neither requests nor checks them (a CA option that requested them and
  // checked nothing was removed). Identity is the username and password of the credentials file.
  z.strictObject({
    kind: z.literal('tls'),
    host: z.string().default('0.0.0.0'),
    port: z.number().int().min(0).max(65_535).default(8883),
    certFile: z.string().describe('PEM certificate chain the broker presents.'),
    keyFile: z.string().describe('PEM private key of that certificate.'),
  }),
]);

export const brokerConfigSchema = z
  .strictObject({
    listeners: z
      .array(listenerSchema)
      .min(1)
      .default([{ kind: 'tcp', host: '127.0.0.1', port: 1883 }])
      .describe(
        'Where to listen: `{kind: tcp, host, port}` and/or `{kind: tls, host, port, certFile, keyFile}`. On both, clients authenticate with the username and password of `credentialsFile`; TLS encrypts and proves the broker to the client, and the broker neither requests nor checks client certificates (for mutual TLS, terminate it in front of the broker or use Mosquitto with `require_certificate`).',
      ),
    credentialsFile: z
      .string()
      .default('var/broker-credentials.yaml')
      .describe(
        'Hashed client credentials, managed with `npm run broker -- users …`; re-read when it changes.',
      ),
    registryFile: z
      .string()
      .optional()
      .describe(
        "The fleet registry (the API's `registryFile`), needed when a poller credential is assigned a shard (`users add --role poller --shard-count …`): its schools are the registry's schools that shard takes, by the poller's own function, re-derived when the file changes (checked every 2 s). Unreadable or invalid at start fails start-up; later, the last good one is kept.",
      ),
    maxPacketBytes: z
      .number()
      .int()
      .min(1_024)
      .default(MAX_PAYLOAD_BYTES + 4_096)
      .describe(
        'Largest MQTT packet; a bigger one closes the connection before it is buffered (stops memory exhaustion).',
      ),
    maxTopicLevels: z
      .number()
      .int()
      .min(7)
      .max(100)
      .default(10)
      .describe('Most `/`-levels in a topic or filter (ours use 5, `$share/g/…` 7); stops router blow-ups.'),
    publishRatePerSec: z
      .number()
      .positive()
      .default(20)
      .describe(
        'Sustained publishes per second per credential (all its connections together, so reconnecting does not refill it), every channel including retained status and last wills; above it the client is disconnected and the publish counted (stops floods, e.g. thousands of retained statuses fanned out to every subscriber). A last will over the rate still goes out within an allowance of 2 per credential, refilled one a minute, so a client cut off for flooding leaves its offline status; beyond that (many connections of one credential dropped at once) it is not published and counted (`rateLimitedWill`).',
      ),
    publishBurst: z
      .number()
      .int()
      .min(1)
      .default(200)
      .describe('Publishes a client may send at once above the sustained rate (store-and-forward replays).'),
    pollerPublishRatePerSec: z
      .number()
      .positive()
      .default(1_000)
      .describe('The same for SNMP pollers, which publish for many routers (2,000 routers at 60 s ≈ 33/s).'),
    pollerPublishBurst: z.number().int().min(1).default(5_000).describe('Burst for pollers (spool replays).'),
    connectTimeoutMs: z
      .number()
      .int()
      .min(100)
      .default(10_000)
      .describe('Time to send CONNECT after opening a socket (stops idle sockets holding file descriptors).'),
    drainTimeoutMs: z
      .number()
      .int()
      .min(0)
      .default(30_000)
      .describe(
        'A subscriber that does not read for this long is disconnected (stops one stuck client stalling all).',
      ),
    maxClientIdLength: z.number().int().min(23).max(256).default(128).describe('Longest client id.'),
    holdDevicesUntilCollector: z
      .boolean()
      .default(true)
      .describe(
        "Refuse a device (CONNACK 3, server unavailable) until a client of role `collector` (one that stores readings) holds a subscription that receives what it publishes — its school, for collectors sharded with `collector.schools` — and a poller until every one of its schools (or targets) is so covered; so readings replayed after a broker restart are not acknowledged and then lost for want of a subscriber, delivered only to a `reader` such as the API's live view, or to the shard of another school; agents keep them spooled meanwhile. A collector's subscriptions count while its session lasts: through a disconnect for a persistent session (messages are queued in it), until the disconnect for a clean one.",
      ),
    pollerMaxRetainedDevices: z
      .number()
      .int()
      .min(1)
      .default(4_096)
      .describe(
        'Most distinct devices one poller credential may hold a retained status for; a retained status for one more is refused (the connection is closed) and counted. Stops a poller creating unbounded retained messages for invented device ids of its schools. Set it above the largest target list of any poller (a city has ~2,000 routers).',
      ),
    authFailuresPerAddress: z
      .number()
      .int()
      .min(1)
      .default(30)
      .describe(
        'Failed logins (wrong username, password or client id) per client address per `authFailureWindowMs`, default 30; beyond, until the window ends, a CONNECT from that address is refused at once with CONNACK 3 (try again later) without checking its password — unless that username has logged in from that address before — counted in `authThrottled` and logged once per window instead of once per attempt. Prevents one address from making the broker run a scrypt and write a log line per guessed password, without end; an address is an IPv4 address or an IPv6 /64.',
      ),
    authFailureWindowMs: z
      .number()
      .int()
      .min(1_000)
      .default(60_000)
      .describe('The window of `authFailuresPerAddress`.'),
    deniedLogIntervalMs: z
      .number()
      .int()
      .min(0)
      .default(10_000)
      .describe(
        'Refused subscriptions are logged as one line per SUBSCRIBE packet with the number of filters refused, and at most one line per credential (all its connections) per this interval (the rest are summed into the next line). Stops one client writing a log line per filter (25,000 lines from 5 packets).',
      ),
  })
  .prefault({});
export type BrokerConfig = z.infer<typeof brokerConfigSchema>;

export interface BrokerStats {
  connected: number;
  /** Logins whose credentials were checked and refused (wrong username, password or client id). */
  authFailures: number;
  /** Logins refused without a check: their address had `authFailuresPerAddress` failures in the window. */
  authThrottled: number;
  /** Devices and pollers refused (CONNACK 3) because no collector had subscribed yet. */
  heldBack: number;
  /** Publishes refused by the ACL. */
  deniedPublish: number;
  /** Subscription filters refused (SUBACK 0x80), one per filter. */
  deniedSubscribe: number;
  /** Publishes refused for exceeding the client's rate, status messages included. */
  rateLimited: number;
  /** Of `rateLimited`, those on the status channel. */
  rateLimitedStatus: number;
  /** Last wills not published: the credential's bucket and its will allowance were both empty. */
  rateLimitedWill: number;
  /** Retained statuses refused because the poller held `pollerMaxRetainedDevices` already. */
  retainedLimited: number;
  /** Publishes refused because an earlier one of the same connection was (it is being closed). */
  refusedAfterRefusal: number;
  oversized: number;
  published: number;
}

/** Refused subscriptions of one credential not yet logged (see `deniedLogIntervalMs`). */
interface SubscribeDenials {
  count: number;
  filter: string;
  why: string;
  /** The client whose filter is shown. */
  clientId: string;
  lastLogMs: number;
  timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
}

interface ClientState {
  principal: Principal;
  hash: string;
  bucket: TokenBucket;
  /** A publish of this connection was refused: it is being closed, and nothing after it is accepted. */
  refused: boolean;
}

/** At most this many successful (address, username) logins are remembered (a city has ~30,000 devices). */
const KNOWN_LOGINS_MAX = 200_000;
/** Last wills a credential may have published over its publish rate: at once, and refilled per minute. */
const WILL_ALLOWANCE_BURST = 2;
const WILL_ALLOWANCE_PER_MIN = 1;

function authError(returnCode: 3 | 4 | 5, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export class Broker implements Service {
  readonly name = 'broker';
  private aedes: Aedes | undefined;
  private servers: Server[] = [];
  private readonly store: CredentialStore;
  private readonly clients = new WeakMap<Client, ClientState>();
  private readonly stats_: Omit<BrokerStats, 'connected'> = {
    authFailures: 0,
    authThrottled: 0,
    heldBack: 0,
    deniedPublish: 0,
    deniedSubscribe: 0,
    rateLimited: 0,
    rateLimitedStatus: 0,
    rateLimitedWill: 0,
    retainedLimited: 0,
    refusedAfterRefusal: 0,
    oversized: 0,
    published: 0,
  };
  /**
   * Per collector client id, the filters its session is subscribed to: what `holdDevicesUntilCollector` admits
   * devices by. See `trackCollectorSessions` for when an entry goes away.
   */
  private collectorFilters = new Map<string, Set<string>>();
  /** Per poller username, the `{school}/{device}` it holds a retained status for (pollerMaxRetainedDevices). */
  private retainedByPoller = new Map<string, Set<string>>();
  /** Publish rate per credential (at most one per username in the credentials file). */
  private buckets = new Map<string, TokenBucket>();
  /** Failed logins per client address (`authFailuresPerAddress`). */
  private authFailures: FailureLimiter;
  /**
   * `{address} {username}` pairs that logged in successfully (most recent last, bounded): an address over its
   * failure budget is still checked for these, so a device is not locked out by a neighbour behind its NAT.
   */
  private knownLogins = new Map<string, true>();
  /** When a throttled log line (by key) was last written. */
  private readonly loggedAt = new Map<string, number>();
  /** Refused subscriptions not yet logged, per credential. */
  private readonly subscribeDenials = new Map<string, SubscribeDenials>();
  /** Per credential: wills that may go out when its publish bucket is empty. */
  private willAllowances = new Map<string, TokenBucket>();
  private readonly timers = new Set<NodeJS.Timeout | NodeJS.Immediate>();
  /** The registry a shard-assigned poller's schools come from (`broker.registryFile`). */
  private readonly registry: RegistryStore | undefined;
  /** Schools per shard (by its JSON) for one registry version. */
  private shardCache = { version: -1, schools: new Map<string, readonly string[]>() };
  private registryErrorLogged: Error | undefined;

  /**
   * The registry's schools `shard` takes, with the function the poller derives its targets by, so the two
   * agree; current as the registry changes (RegistryStore re-reads a replaced file; the last good one is kept).
   */
  private shardSchools(shard: Shard): readonly string[] {
    const store = this.registry;
    if (!store) return [];
    const idx = store.index;
    if (store.lastError && store.lastError !== this.registryErrorLogged) {
      this.registryErrorLogged = store.lastError;
      this.deps.log.error(
        { err: store.lastError.message },
        'registry could not be re-read: keeping the last good one',
      );
    }
    if (this.shardCache.version !== store.version)
      this.shardCache = { version: store.version, schools: new Map() };
    const key = JSON.stringify(shard);
    let schools = this.shardCache.schools.get(key);
    if (!schools) {
      schools = idx.data.schools
        .filter((s) => inShard({ school: s.id, region: idx.regionPath(s.region) }, shard))
        .map((s) => s.id);
      this.shardCache.schools.set(key, schools);
    }
    return schools;
  }

  /** A poller credential assigned a shard needs the registry to know its schools. */
  private checkShards(): void {
    if (this.registry) return;
    const user = this.store.list().find((e) => e.role === 'poller' && e.shard !== undefined);
    if (user)
      throw new CredentialsError(
        `${this.config.credentialsFile}: user ${user.username} is assigned a shard: broker.registryFile must be set`,
      );
  }

  /** Notices when another process (`users …`) replaced the credentials file: looked at once a second. */
  private readonly credentialsWatch: FileWatch;
  private stopWatching: (() => void) | undefined;
  /** Actual ports, in listener order (useful when configured as 0). */
  ports: number[] = [];

  constructor(
    readonly config: BrokerConfig,
    private readonly deps: { log: Logger },
  ) {
    this.registry = config.registryFile ? new RegistryStore(config.registryFile) : undefined;
    this.store = new CredentialStore(config.credentialsFile, (shard) => this.shardSchools(shard));
    this.credentialsWatch = new FileWatch(config.credentialsFile, 1_000);
    this.authFailures = this.newFailureLimiter();
  }

  private newFailureLimiter(): FailureLimiter {
    return new FailureLimiter({
      max: this.config.authFailuresPerAddress,
      windowMs: this.config.authFailureWindowMs,
    });
  }

  /** Remembers a successful login of `username` from `address` (a bounded set: the oldest are forgotten). */
  private rememberLogin(pair: string): void {
    this.knownLogins.delete(pair);
    this.knownLogins.set(pair, true);
    if (this.knownLogins.size > KNOWN_LOGINS_MAX)
      this.knownLogins.delete(this.knownLogins.keys().next().value!);
  }

  stats(): BrokerStats {
    return { connected: this.aedes?.connectedClients ?? 0, ...this.stats_ };
  }

  async start(): Promise<void> {
    const c = this.config;
    const log = this.deps.log;
    // A start is a fresh in-memory broker: no collector session, nothing retained.
    this.collectorFilters = new Map();
    this.retainedByPoller = new Map();
    this.buckets = new Map();
    this.authFailures = this.newFailureLimiter();
    this.knownLogins = new Map();
    this.willAllowances = new Map();
    this.credentialsWatch.mark();
    await this.store.load();
    this.checkShards();
    try {
      this.registry?.load();
    } catch (e) {
      throw new Error(`broker.registryFile: ${(e as Error).message}`);
    }
    if (this.store.size === 0) {
      log.warn(
        { file: c.credentialsFile },
        'no credentials: every client will be refused (add some with `users add`)',
      );
    }
    const aedes = await Aedes.createBroker({
      connectTimeout: c.connectTimeoutMs,
      drainTimeout: c.drainTimeoutMs,
      maxTopicLevels: c.maxTopicLevels,
      maxClientsIdLength: c.maxClientIdLength,
      heartbeatInterval: 60_000,
      authenticate: (client, username, password, done) => {
        const address = addressKey((client.conn as { remoteAddress?: string } | undefined)?.remoteAddress);
        const pair = `${address} ${username ?? ''}`;
        if (this.authFailures.limitedForMs(address) > 0 && !this.knownLogins.has(pair)) {
          // No scrypt and no log line per attempt (one per window, below): CONNACK 3, try again later.
          this.stats_.authThrottled++;
          return done(authError(3, 'too many failed logins from this address: try again later'), false);
        }
        this.authenticate(client, username, password).then(
          () => {
            this.rememberLogin(pair);
            done(null, true);
          },
          (err: AuthenticateError & { heldBack?: boolean }) => {
            if (err.heldBack) {
              this.rememberLogin(pair); // the credentials were right
            } else {
              this.stats_.authFailures++;
              this.knownLogins.delete(pair);
              if (this.authFailures.fail(address))
                log.warn(
                  { address, failures: c.authFailuresPerAddress, windowMs: c.authFailureWindowMs },
                  'failed logins from one address: refusing its new clients unchecked until the window ends (usernames that logged in from there before are still checked)',
                );
            }
            // Held devices retry every few seconds until their collector is back: after a restart thousands of
            // them would each write a line per attempt, so held refusals are logged at most once per interval
            // (the count is in the stats' `heldBack`).
            if (!err.heldBack || this.logThrottled('held'))
              log.warn(
                {
                  clientId: client.id,
                  username,
                  address,
                  why: err.message,
                  ...(err.heldBack ? { heldBack: this.stats_.heldBack } : {}),
                },
                'connection refused',
              );
            done(err, false);
          },
        );
      },
      authorizePublish: (client, packet, done) => {
        // `client` is null only for a last will restored from persistence after a restart.
        if (!client) return done(null);
        const st = this.clients.get(client);
        if (!st) return done(new Error('not authenticated'));
        const d = this.authorizePublish(client, st, packet);
        if (d) return done(new Error(d));
        this.stats_.published++;
        done(null);
      },
      authorizeSubscribe: (client, sub, done) => {
        const st = this.clients.get(client);
        const d = st
          ? maySubscribe(st.principal, sub.topic)
          : { ok: false as const, reason: 'not authenticated' };
        if (!d.ok) {
          this.stats_.deniedSubscribe++;
          if (st) this.noteSubscribeDenied(client, st, sub.topic, d.reason);
          // A refused filter gets SUBACK 0x80 (MQTT-3.9.3) and the session continues.
          return done(null, null);
        }
        done(null, sub);
      },
    });
    this.trackCollectorSessions(aedes);
    aedes.on('clientError', (client, err) =>
      log.debug({ clientId: client?.id, err: err.message }, 'client error'),
    );
    aedes.on('connectionError', (client, err) =>
      log.debug({ clientId: client?.id, err: err.message }, 'connection error'),
    );
    this.aedes = aedes;

    for (const l of c.listeners) {
      const onSocket = (socket: Socket) => {
        // Without this Nagle's algorithm holds each small PUBACK until the client's delayed ACK (~40 ms): an
        // agent or poller replaying its spool one acknowledged message at a time would get ~23 messages/s.
        socket.setNoDelay(true);
        const conn = new FrameLimitedConnection(socket, c.maxPacketBytes, (why) => {
          this.stats_.oversized++;
          log.warn({ remote: socket.remoteAddress, why }, 'oversized packet: connection closed');
        });
        aedes.handle(conn);
      };
      const server =
        l.kind === 'tcp'
          ? createTcpServer(onSocket)
          : createTlsServer(
              {
                cert: await readFile(l.certFile),
                key: await readFile(l.keyFile),
                requestCert: false, // see listenerSchema: identity is the username and password
                minVersion: 'TLSv1.2',
              },
              onSocket,
            );
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.port, l.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      this.servers.push(server);
      this.ports.push((server.address() as { port: number }).port);
      log.info({ kind: l.kind, host: l.host, port: this.ports.at(-1) }, 'broker listening');
    }
    this.stopWatching = this.credentialsWatch.poll(() =>
      this.reloadCredentials().catch((err: unknown) =>
        log.error({ err }, 'credentials file unreadable: keeping the previous credentials'),
      ),
    );
  }

  private async authenticate(client: Client, username: string | undefined, password: Buffer | undefined) {
    if (!username || !password) throw authError(4, 'missing username or password');
    const auth = await this.store.authenticate(username, password.toString('utf8'));
    if (!auth) throw authError(4, 'bad username or password');
    // Rotated or revoked while scrypt ran: the proof was for credentials that no longer hold.
    if (this.store.get(username)?.hash !== auth.hash)
      throw authError(4, 'credentials changed during the check');
    const { principal } = auth;
    if (!clientIdAllowed(principal, client.id)) {
      throw authError(5, `client id must be "${username}" or "${username}/…"`);
    }
    if (
      this.config.holdDevicesUntilCollector &&
      (principal.role === 'device' || principal.role === 'poller')
    ) {
      const missing = this.uncoveredSchools(principal);
      if (missing.length > 0) {
        this.stats_.heldBack++;
        const shown =
          missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
        throw Object.assign(
          authError(3, `no collector has subscribed to school ${shown} yet: try again later`),
          { heldBack: true },
        );
      }
    }
    // A clean session starts empty (MQTT-3.1.2-6): whatever this client id's previous session was subscribed to
    // is discarded by the broker now, and no longer receives anything.
    if (principal.role === 'collector' && client.clean) this.collectorFilters.delete(client.id);
    // One bucket per credential, not per connection: reconnecting does not refill it.
    let bucket = this.buckets.get(username);
    if (!bucket) {
      bucket =
        principal.role === 'poller'
          ? new TokenBucket(this.config.pollerPublishRatePerSec, this.config.pollerPublishBurst)
          : new TokenBucket(this.config.publishRatePerSec, this.config.publishBurst);
      this.buckets.set(username, bucket);
    }
    this.clients.set(client, {
      principal,
      hash: auth.hash,
      bucket,
      refused: false,
    });
  }

  /**
   * Which collector subscriptions admit devices (`holdDevicesUntilCollector`). Only a `collector` counts: it
   * stores readings; a `reader` (the API's live view) does not, and its subscription admits no one.
   *
   * Collectors may be sharded by school (`collector.schools`, a disjoint list each, filters `cfm/v1/{school}/#`):
   * one shard subscribing after a restart must not admit the devices of another shard's schools, whose replayed
   * readings would be acknowledged and lost. So the broker remembers each collector session's filters and
   * admits a device when one of them receives its topics (`uncoveredSchools`).
   *
   * A filter counts as long as the session holding it receives messages for it: a persistent session
   * (clean = false, as the collector connects) keeps its subscriptions and has messages queued while it is
   * away, so they keep counting through a disconnect, until the collector unsubscribes or reconnects with a
   * clean session. A clean session's subscriptions end with its connection (MQTT-3.1.2-6): aedes then emits
   * `unsubscribe` for them (it does not for a persistent session's disconnect), and they stop counting.
   * Devices already connected stay connected when coverage goes: the hold is about what a restart replays.
   * The 'subscribe' event comes after the subscription is in place and before the SUBACK is read by the client;
   * a persistent session restored on reconnect keeps its entry (its filters are re-authorised, not re-emitted).
   */
  private trackCollectorSessions(aedes: Aedes): void {
    aedes.on('subscribe', (subs, client) => {
      if (this.clients.get(client)?.principal.role !== 'collector') return;
      let filters = this.collectorFilters.get(client.id);
      for (const s of subs) {
        if ((s.qos as number) === 128) continue; // refused (SUBACK 0x80, MQTT-3.9.3): receives nothing
        if (!filters) {
          filters = new Set();
          this.collectorFilters.set(client.id, filters);
        }
        if (filters.has(s.topic)) continue;
        filters.add(s.topic);
        this.deps.log.info(
          { clientId: client.id, filter: s.topic },
          'a collector subscribed: admitting the devices this filter receives',
        );
      }
    });
    aedes.on('unsubscribe', (unsubs, client) => {
      // An UNSUBSCRIBE, or a clean session's connection closing. When a connection with the same client id takes
      // the session over (MQTT-3.1.4-2), the old one closes before the new one's CONNACK, so this never removes
      // what the new one subscribed.
      const filters = this.collectorFilters.get(client.id);
      if (!filters) return;
      for (const f of unsubs) filters.delete(f);
      if (filters.size === 0) this.collectorFilters.delete(client.id);
    });
  }

  /**
   * The schools of a device or poller whose topics no collector session receives (`publishTopicsBySchool`): a
   * device's own school; for a poller every one of its schools (or targets'), since it replays the readings of
   * all of them on one connection — admitted with one shard up, it would lose those of the others.
   */
  private uncoveredSchools(p: Principal): string[] {
    const filters = [...this.collectorFilters.values()].flatMap((set) => [...set]);
    const missing: string[] = [];
    for (const [school, topics] of publishTopicsBySchool(p))
      if (!topics.every((t) => filters.some((f) => filterReceives(f, t)))) missing.push(school);
    return missing;
  }

  /**
   * The publish policy: ACL, then the rate limit (every publish, status included), then the poller's bound on
   * retained statuses. Returns why a publish is refused, undefined when it may pass. The first refusal of a
   * connection is logged; the connection is then closed (MQTT 3.1.1 has no per-publish refusal, MQTT-3.3.5-2)
   * and whatever else it had already sent is refused without a log line each.
   */
  private authorizePublish(client: Client, st: ClientState, packet: PublishPacket): string | undefined {
    const c = this.config;
    // aedes passes the last will through here too (the same object as `client.will`), once per connection,
    // after the client is gone. It is charged like any publish, but when the bucket is empty it may still use
    // the credential's will allowance (WILL_ALLOWANCE_BURST, refilled one a minute): a client cut off for
    // flooding still leaves its offline status behind, while a credential dropping many connections at once
    // cannot fan out wills beyond its rate.
    const isWill = (client as Client & { will?: unknown }).will === packet;
    if (st.refused && !isWill) {
      this.stats_.refusedAfterRefusal++;
      return 'an earlier publish of this connection was refused';
    }
    const d = mayPublish(st.principal, packet.topic, packet.retain);
    let stat: 'deniedPublish' | 'rateLimited' | 'retainedLimited' | undefined;
    let why: string | undefined;
    if (!d.ok) {
      stat = 'deniedPublish';
      why = d.reason;
    } else if (isWill && !st.bucket.take() && !this.willAllowance(st.principal.username).take()) {
      // Many connections of one credential (`dev-a/1`, `dev-a/2`, …) dropped at once: beyond the credential's
      // rate and its allowance, their wills are not published (counted, logged at most once per interval).
      this.stats_.rateLimitedWill++;
      if (this.logThrottled(`will:${st.principal.username}`))
        this.deps.log.warn(
          { clientId: client.id, username: st.principal.username, topic: packet.topic.slice(0, 200) },
          'last will not published: the credential is over its publish rate and will allowance',
        );
      return 'last will over the rate';
    } else if (!isWill && !st.bucket.take()) {
      stat = 'rateLimited';
      why = 'publish rate exceeded';
      if (packet.topic.endsWith('/status')) this.stats_.rateLimitedStatus++;
    } else if (packet.retain && st.principal.role === 'poller') {
      why = this.holdRetained(st.principal.username, packet);
      if (why) stat = 'retainedLimited';
    }
    if (!stat || !why) return undefined;
    this.stats_[stat]++;
    if (!st.refused) {
      st.refused = true;
      this.deps.log.warn(
        {
          clientId: client.id,
          topic: packet.topic.slice(0, 200),
          why,
          ...(stat === 'rateLimited'
            ? {
                ratePerSec: st.principal.role === 'poller' ? c.pollerPublishRatePerSec : c.publishRatePerSec,
              }
            : {}),
        },
        `publish refused (${stat}): disconnecting`,
      );
    }
    return why;
  }

  private willAllowance(username: string): TokenBucket {
    let b = this.willAllowances.get(username);
    if (!b) {
      b = new TokenBucket(WILL_ALLOWANCE_PER_MIN / 60, WILL_ALLOWANCE_BURST);
      this.willAllowances.set(username, b);
    }
    return b;
  }

  /** Whether a log line of this key may be written now: at most one per `deniedLogIntervalMs`. */
  private logThrottled(key: string): boolean {
    const now = performance.now();
    const last = this.loggedAt.get(key);
    if (last !== undefined && now - last < this.config.deniedLogIntervalMs) return false;
    if (this.loggedAt.size >= 10_000) this.loggedAt.clear(); // bounded: at worst a few extra lines
    this.loggedAt.set(key, now);
    return true;
  }

  /** Tracks the devices a poller holds a retained status for; refuses one more than the bound. */
  private holdRetained(username: string, packet: PublishPacket): string | undefined {
    const key = packet.topic.split('/').slice(2, 4).join('/');
    let held = this.retainedByPoller.get(username);
    if (!held) {
      held = new Set();
      this.retainedByPoller.set(username, held);
    }
    // An empty retained payload deletes the retained message (MQTT-3.3.1-10).
    if (packet.payload.length === 0) {
      held.delete(key);
      return undefined;
    }
    if (held.has(key)) return undefined;
    if (held.size >= this.config.pollerMaxRetainedDevices) {
      return `poller already holds a retained status for ${held.size} devices (pollerMaxRetainedDevices)`;
    }
    held.add(key);
    return undefined;
  }

  /**
   * Refused filters are summed per client and logged as one line with the count: the filters of one SUBSCRIBE
   * packet are authorised in the same tick, so the first line covers the whole packet; later ones wait until
   * `deniedLogIntervalMs` has passed since the last line.
   */
  private noteSubscribeDenied(client: Client, st: ClientState, filter: string, why: string): void {
    // Per credential, not per connection: reconnecting in a loop does not earn a log line each time.
    const username = st.principal.username;
    let d = this.subscribeDenials.get(username);
    if (!d) {
      if (this.subscribeDenials.size >= 10_000) this.subscribeDenials.clear(); // bounded: a few extra lines
      d = {
        count: 0,
        filter: '',
        why: '',
        clientId: '',
        lastLogMs: Number.NEGATIVE_INFINITY,
        timer: undefined,
      };
      this.subscribeDenials.set(username, d);
    }
    if (d.count === 0) {
      d.filter = filter.slice(0, 200);
      d.why = why;
      d.clientId = client.id;
    }
    d.count++;
    if (d.timer) return;
    const flush = () => {
      this.timers.delete(d.timer!);
      d.timer = undefined;
      d.lastLogMs = performance.now();
      this.deps.log.warn(
        { clientId: d.clientId, username, refused: d.count, filter: d.filter, why: d.why },
        d.count === 1 ? 'subscribe denied' : `subscribe denied: ${d.count} filters`,
      );
      d.count = 0;
    };
    const waitMs = d.lastLogMs + this.config.deniedLogIntervalMs - performance.now();
    // setImmediate runs right after the I/O callback that parsed the packet, so it sums exactly that packet.
    d.timer = waitMs <= 0 ? setImmediate(flush) : setTimeout(flush, waitMs).unref();
    this.timers.add(d.timer);
  }

  /** Re-reads the credentials file and disconnects clients whose credentials were revoked or rotated. */
  async reloadCredentials(): Promise<void> {
    this.credentialsWatch.mark(); // a malformed file is not retried until it changes again
    await this.store.load();
    this.checkShards(); // loaded all the same: such a poller has no school until the registry is configured
    const aedes = this.aedes;
    if (!aedes) return;
    const connected = (aedes as unknown as { clients: Record<string, Client> }).clients;
    for (const client of Object.values(connected)) {
      const st = this.clients.get(client);
      if (!st) continue;
      const entry = this.store.get(st.principal.username);
      if (!entry || entry.hash !== st.hash) {
        this.deps.log.info(
          { clientId: client.id, username: st.principal.username },
          'credentials revoked or rotated: disconnecting',
        );
        client.close();
      }
    }
  }

  async stop(): Promise<void> {
    this.stopWatching?.();
    this.stopWatching = undefined;
    for (const t of this.timers) {
      clearTimeout(t as NodeJS.Timeout);
      clearImmediate(t as NodeJS.Immediate);
    }
    this.timers.clear();
    for (const s of this.servers) s.close();
    this.servers = [];
    const aedes = this.aedes;
    this.aedes = undefined;
    if (aedes) await new Promise<void>((r) => aedes.close(() => r()));
    this.ports = [];
  }
}
