import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { Broker, type BrokerConfig, brokerConfigSchema } from '../../broker/broker.js';
import { CredentialStore } from '../../broker/credentials.js';
import { captureLogger } from './influx.js';

export { Mosquitto } from '../../dev/mosquitto.js';

export type UserSpec = Parameters<CredentialStore['add']>[0];

/** The embedded broker on a free loopback port with the given users; `secrets[username]` is each one's secret. */
export async function startBroker(users: UserSpec[], overrides: Partial<BrokerConfig> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'cfm-broker-'));
  const credentialsFile = join(dir, 'credentials.yaml');
  const store = new CredentialStore(credentialsFile);
  const secrets: Record<string, string> = {};
  for (const u of users) secrets[u.username] = await store.add(u);
  const { log, lines } = captureLogger('broker');
  const config = brokerConfigSchema.parse({
    credentialsFile,
    listeners: [{ kind: 'tcp', port: 0 }],
    ...overrides,
  });
  const broker = new Broker(config, { log });
  await broker.start();
  return {
    broker,
    store,
    secrets,
    logs: lines,
    dir,
    get url() {
      return `mqtt://127.0.0.1:${broker.ports[0]}`;
    },
    async dispose() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An mqtt.js client that connects once (no reconnect); resolves on CONNACK or rejects with the broker's reason. */
export function connectClient(url: string, opts: IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5_000, protocolVersion: 4, ...opts });
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** Resolves when the client's connection closes. */
export function closed(c: MqttClient): Promise<void> {
  return new Promise((r) => (c.connected ? c.once('close', () => r()) : r()));
}

/**
 * The shipped Mosquitto profile (deploy/compose/mosquitto/mosquitto.conf) for a test: the container's paths
 * replaced by `files`, no log file, and its one listener moved in place to a loopback port (`{{PORT}}`, filled
 * by the launcher; listener options apply to the `listener` line above them, so the order must stay).
 */
export function shippedMosquittoConfig(files: { passwd: string; acl: string; data: string }): string {
  const conf = new URL('../../deploy/compose/mosquitto/mosquitto.conf', import.meta.url);
  const shipped = readFileSync(conf, 'utf8');
  const listeners = shipped.match(/^listener .*$/gm);
  if (listeners?.join() !== 'listener 1883')
    throw new Error(`the shipped mosquitto.conf has listeners ${listeners?.join(', ')}, not one on 1883`);
  return shipped
    .split('\n')
    .filter((l) => !/^log_dest /.test(l))
    .map((l) => (l === 'listener 1883' ? 'listener {{PORT}} 127.0.0.1' : l))
    .join('\n')
    .replaceAll('/mosquitto/auth/passwd', files.passwd)
    .replaceAll('/mosquitto/config/acl', files.acl)
    .replaceAll('/mosquitto/data/', `${files.data}/`);
}
