import { entityKey, isValidId } from './ids.js';

/**
 * The MQTT topic grammar. Every topic the system publishes is
 *
 *     cfm/v1/{school}/{device}/{channel}
 *
 * - `cfm/v1` names the protocol and its major version, so a broker shared with other systems stays apart and a
 *   v2 can run beside v1 during a migration.
 * - `{school}` is level 3 so that (a) the broker ACL can say "this poller publishes only for schools A and B"
 *   with the filters `cfm/v1/A/#` and `cfm/v1/B/#`, and (b) a collector can be sharded by school with the same
 *   filters instead of (or inside) a shared subscription.
 * - `{device}` is level 4 so that "a device publishes only under its own subtree" is the single filter
 *   `cfm/v1/{school}/{device}/#`.
 * - `{channel}` says which message schema the payload has (see `messages.ts`); the map `TopicPayloads` types
 *   every publisher and subscriber against it.
 */
export const TOPIC_ROOT = 'cfm';
export const TOPIC_VERSION = 'v1';

export const CHANNELS = ['status', 'telemetry', 'iface', 'event', 'probe'] as const;
export type Channel = (typeof CHANNELS)[number];

/** Channels whose messages are published retained: the last status of a device is what a new subscriber needs. */
export const RETAINED_CHANNELS: ReadonlySet<Channel> = new Set<Channel>(['status']);

export interface TopicParts {
  school: string;
  device: string;
  channel: Channel;
}

export class TopicError extends Error {
  override name = 'TopicError';
}

function checkId(kind: string, value: string): void {
  if (!isValidId(value)) throw new TopicError(`invalid ${kind} id ${JSON.stringify(value)} in topic`);
}

export function buildTopic(parts: TopicParts): string {
  checkId('school', parts.school);
  checkId('device', parts.device);
  if (!(CHANNELS as readonly string[]).includes(parts.channel)) {
    throw new TopicError(`unknown channel ${JSON.stringify(parts.channel)}`);
  }
  return `${TOPIC_ROOT}/${TOPIC_VERSION}/${parts.school}/${parts.device}/${parts.channel}`;
}

/**
 * `key`: the device's `entityKey(school, device)`, made once per cached topic — the collector's per-device
 * lookups (registry, bounds, presence) use it instead of joining the two ids again for every message.
 */
export type ParsedTopic = ({ ok: true; key: string } & TopicParts) | { ok: false; reason: TopicRejectReason };
export type TopicRejectReason =
  | 'foreign_root'
  | 'unsupported_version'
  | 'bad_shape'
  | 'bad_id'
  | 'unknown_channel';

const parsedCache = new Map<string, ParsedTopic>();
const PARSED_CACHE_MAX = 200_000;

/**
 * Parses a concrete (wildcard-free) topic. Never throws: the reason feeds the collector's rejection counters.
 * Valid topics are cached (a fleet has a bounded number: devices × channels); invalid ones are not, so garbage
 * cannot fill the cache.
 */
export function parseTopic(topic: string): ParsedTopic {
  const hit = parsedCache.get(topic);
  if (hit) return hit;
  const r = parseTopicUncached(topic);
  if (r.ok) {
    if (parsedCache.size >= PARSED_CACHE_MAX) parsedCache.clear();
    parsedCache.set(topic, r);
  }
  return r;
}

function parseTopicUncached(topic: string): ParsedTopic {
  const levels = topic.split('/');
  if (levels[0] !== TOPIC_ROOT) return { ok: false, reason: 'foreign_root' };
  if (levels[1] !== TOPIC_VERSION) return { ok: false, reason: 'unsupported_version' };
  if (levels.length !== 5) return { ok: false, reason: 'bad_shape' };
  const [, , school, device, channel] = levels as [string, string, string, string, string];
  if (!isValidId(school) || !isValidId(device)) return { ok: false, reason: 'bad_id' };
  if (!(CHANNELS as readonly string[]).includes(channel)) return { ok: false, reason: 'unknown_channel' };
  return { ok: true, school, device, channel: channel as Channel, key: entityKey(school, device) };
}

/** Topic filters for subscriptions and ACL rules. Each id is validated so that no caller can smuggle a wildcard. */
export const filters = {
  /** Everything of protocol v1, optionally one channel only: what a collector subscribes to. */
  all(channel?: Channel): string {
    return `${TOPIC_ROOT}/${TOPIC_VERSION}/+/+/${channel ?? '+'}`;
  },
  /** One school's devices: a poller's publish ACL, or a collector shard. */
  school(school: string, channel?: Channel): string {
    checkId('school', school);
    return channel
      ? `${TOPIC_ROOT}/${TOPIC_VERSION}/${school}/+/${channel}`
      : `${TOPIC_ROOT}/${TOPIC_VERSION}/${school}/#`;
  },
  /** One device's own subtree: a device's publish ACL. */
  device(school: string, device: string): string {
    checkId('school', school);
    checkId('device', device);
    return `${TOPIC_ROOT}/${TOPIC_VERSION}/${school}/${device}/#`;
  },
  /** An MQTT 5 shared subscription (MQTT-4.8.2): several collectors in one group split the messages. */
  shared(group: string, filter: string): string {
    checkId('group', group);
    return `$share/${group}/${filter}`;
  },
};

/**
 * Does `topic` match `filter`? MQTT 3.1.1/5 semantics: `+` matches exactly one level, `#` matches the parent and
 * any number of levels and must be last (MQTT-4.7.1-2); a wildcard at the first level does not match a topic
 * starting with `$` (MQTT-4.7.2-1).
 */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const fl = f[i];
    if (fl === '#') return i === f.length - 1;
    if (i >= t.length) return false;
    if (fl !== '+' && fl !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Is `filter` a syntactically valid topic filter? (MQTT-4.7.1-2, MQTT-4.7.1-3, MQTT-4.7.3-1) */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((l, i) => {
    if (l === '#') return i === levels.length - 1;
    if (l.includes('#')) return false;
    return l === '+' || !l.includes('+');
  });
}
