import mqtt, { type MqttClient } from 'mqtt';
import { buildTopic } from '../contracts/topics.js';

/**
 * A classroom device as MQTT presence sees it, for tests and benchmarks that need many of them cheaply: a
 * retained `online` birth, and an `offline` will the broker publishes when the connection dies. (The real agent,
 * `agents/classroom`, does the same and much more.)
 */
export async function connectPresence(
  url: string,
  opts: {
    school: string;
    device: string;
    keepaliveS: number;
    password?: string | undefined;
    /** The reading interval the birth promises (the alert service's data-gap clock). */
    heartbeatS?: number;
  },
): Promise<MqttClient> {
  const topic = buildTopic({ school: opts.school, device: opts.device, channel: 'status' });
  const status = (state: 'online' | 'offline') =>
    JSON.stringify({
      v: 1,
      ts: Date.now(),
      state,
      kind: 'panel',
      heartbeatS: opts.heartbeatS ?? 60,
      ...(state === 'offline' ? { reason: 'will' } : {}),
    });
  const c = await mqtt.connectAsync(url, {
    clientId: opts.device,
    ...(opts.password ? { username: opts.device, password: opts.password } : {}),
    keepalive: opts.keepaliveS,
    reconnectPeriod: 0,
    will: { topic, payload: Buffer.from(status('offline')), qos: 1, retain: true },
  });
  await c.publishAsync(topic, status('online'), { qos: 1, retain: true });
  return c;
}
