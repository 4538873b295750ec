import { isValidFilter, parseTopic, TOPIC_ROOT, TOPIC_VERSION, topicMatches } from '../contracts/topics.js';

/**
 * Who a connected client is, and so what it may do. Deny by default: a topic or filter that no rule below
 * allows is refused.
 *
 * | role      | publish                                                        | subscribe                   |
 * | --------- | -------------------------------------------------------------- | --------------------------- |
 * | device    | its own subtree `cfm/v1/{school}/{device}/{status,telemetry,event}` | nothing                |
 * | poller    | `cfm/v1/{school}/{device}/{status,iface,event,probe}` for its schools, and only the listed devices when its credential lists `devices` | nothing |
 * | collector | nothing                                                        | filters under `cfm/v1/`, also `$share/{group}/…` |
 * | reader    | nothing                                                        | the same, but not `$share/` |
 *
 * `collector` means "stores readings": only a collector's subscription admits devices after a broker restart
 * (`broker.holdDevicesUntilCollector`). A `reader` (the API's live view and alerting) reads the same topics but
 * stores nothing, so its subscription must not admit devices whose replayed readings would then be lost.
 *
 * Nobody publishes to `$SYS/…` or outside `cfm/v1/`, and only `status` may be retained (the birth/last will);
 * a retained reading would be replayed to every new subscriber as if it were new. A device can therefore retain
 * exactly one message, its own status; how many devices a poller may retain a status for is bounded in
 * broker.ts (`pollerMaxRetainedDevices`).
 */
export type Principal =
  | { role: 'device'; username: string; school: string; device: string }
  | {
      role: 'poller';
      username: string;
      schools: readonly string[];
      /** When present, the only devices (`{school}/{device}`) it may publish for. */
      devices?: ReadonlySet<string>;
    }
  | { role: 'collector'; username: string }
  | { role: 'reader'; username: string };

/** Roles that subscribe to readings. */
export const SUBSCRIBER_ROLES: ReadonlySet<Principal['role']> = new Set(['collector', 'reader']);

export type Denial = { ok: false; reason: string };
export type Decision = { ok: true } | Denial;

const ok: Decision = { ok: true };
const deny = (reason: string): Denial => ({ ok: false, reason });

const DEVICE_CHANNELS = new Set(['status', 'telemetry', 'event']);
const POLLER_CHANNELS = new Set(['status', 'iface', 'event', 'probe']);

export function mayPublish(p: Principal, topic: string, retain: boolean): Decision {
  if (topic.startsWith('$')) return deny('topics starting with $ are reserved for the broker');
  const t = parseTopic(topic);
  if (!t.ok) return deny(`topic is not cfm/v1/{school}/{device}/{channel} (${t.reason})`);
  if (retain && t.channel !== 'status') return deny('only status messages may be retained');
  switch (p.role) {
    case 'device':
      if (t.school !== p.school || t.device !== p.device)
        return deny('a device publishes only under its own subtree');
      if (!DEVICE_CHANNELS.has(t.channel)) return deny(`a device does not publish ${t.channel}`);
      return ok;
    case 'poller':
      if (!p.schools.includes(t.school)) return deny(`school ${t.school} is not assigned to this poller`);
      if (p.devices && !p.devices.has(`${t.school}/${t.device}`))
        return deny(`device ${t.school}/${t.device} is not a target of this poller`);
      if (!POLLER_CHANNELS.has(t.channel)) return deny(`a poller does not publish ${t.channel}`);
      return ok;
    case 'collector':
    case 'reader':
      return deny(`a ${p.role} only subscribes`);
  }
}

/** `$share/{group}/{filter}` (MQTT-4.8.2) → the filter inside; anything else unchanged. */
export function stripShare(filter: string): string | undefined {
  if (!filter.startsWith('$share/')) return filter;
  const parts = filter.split('/');
  if (parts.length < 3 || !parts[1] || parts[1].includes('+') || parts[1].includes('#')) return undefined;
  return parts.slice(2).join('/');
}

/**
 * Whether subscription filter `filter` (`$share/{group}/…` or plain) receives messages published on `topic`
 * (MQTT-4.7 topic matching on the filter inside a shared subscription, MQTT-4.8.2). `topic` may have `+` as its
 * device level, meaning "any device": no valid id is `+`, so only a wildcard at that level of the filter (`+`,
 * or `#` above it) matches it — the filter receives every device of the school, not just one.
 */
export function filterReceives(filter: string, topic: string): boolean {
  const inner = stripShare(filter);
  return inner !== undefined && topicMatches(inner, topic);
}

/**
 * What a device or poller may publish, by school: the topics (`+` as the device level for "any device of the
 * school") a collector must receive before the broker admits it after a restart (`holdDevicesUntilCollector`):
 * a device, its own subtree's channels; a poller with a target list, each target's; a poller without one, any
 * device of each of its schools. Subscribers publish nothing: an empty map.
 */
export function publishTopicsBySchool(p: Principal): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (school: string, device: string, channels: ReadonlySet<string>) => {
    let list = out.get(school);
    if (!list) {
      list = [];
      out.set(school, list);
    }
    for (const c of channels) list.push(`${TOPIC_ROOT}/${TOPIC_VERSION}/${school}/${device}/${c}`);
  };
  if (p.role === 'device') add(p.school, p.device, DEVICE_CHANNELS);
  else if (p.role === 'poller') {
    if (p.devices) {
      for (const target of p.devices) {
        const [school, device] = target.split('/') as [string, string];
        add(school, device, POLLER_CHANNELS);
      }
    } else for (const school of p.schools) add(school, '+', POLLER_CHANNELS);
  }
  return out;
}

export function maySubscribe(p: Principal, filter: string): Decision {
  if (!SUBSCRIBER_ROLES.has(p.role)) return deny(`a ${p.role} does not subscribe`);
  // A shared subscription takes each message away from the other members of its group: a reader joining the
  // collectors' group would receive readings that are then never stored.
  if (p.role === 'reader' && filter.startsWith('$share/'))
    return deny('a reader does not join shared subscriptions (it would take readings from the collectors)');
  const inner = stripShare(filter);
  if (inner === undefined || !isValidFilter(inner)) return deny('not a valid topic filter');
  const [root, version] = inner.split('/');
  if (root !== TOPIC_ROOT || version !== TOPIC_VERSION) {
    return deny(`only filters under ${TOPIC_ROOT}/${TOPIC_VERSION}/ are allowed`);
  }
  return ok;
}

/**
 * A client id must be the username or `username/suffix`, so one credential cannot take over another client's
 * session (MQTT-3.1.4-2: a second connection with the same id closes the first). `/` cannot occur in a
 * username, so `dev-s1-c07` can never claim `dev-s1-c07-ops`'s id.
 */
export function clientIdAllowed(p: Principal, clientId: string): boolean {
  return clientId === p.username || clientId.startsWith(`${p.username}/`);
}
