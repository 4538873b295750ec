import { createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MqttSession, mqttConfigSchema } from '../../common/mqtt.js';
import { captureLogger, waitFor } from '../helpers/influx.js';

/**
 * A broker that answers CONNECT late: here a bare TCP server speaking the two MQTT 3.1.1 packets it needs, so
 * the CONNACK can be sent at the one moment that matters — after the client began ending (seen in a quickstart
 * stopping while an agent was still connecting: mqtt.js had closed its store, the birth message's publish threw
 * an uncaught TypeError and ended the process).
 */
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const CONNECT = 0x10;
const PUBLISH = 0x30;

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c();
});

/** `halfOpen`: the broker keeps its side open after the client ends its own (it never closes the connection). */
async function lateBroker(halfOpen = false): Promise<{
  url: string;
  packets: number[];
  socket: () => Socket | undefined;
  closed: () => boolean;
}> {
  const packets: number[] = [];
  let socket: Socket | undefined;
  let closed = false;
  const server = createServer({ allowHalfOpen: halfOpen }, (s) => {
    socket = s;
    s.on('error', () => {});
    s.on('close', () => {
      closed = true;
    });
    s.on('data', (d) => {
      packets.push(d[0]! & 0xf0);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => {
    socket?.destroy();
    server.close();
  });
  return {
    url: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`,
    packets,
    socket: () => socket,
    closed: () => closed,
  };
}

describe('MqttSession stopping or pausing while the broker has not answered CONNECT', () => {
  it.each(['stop', 'pause'] as const)(
    'a CONNACK read after %s() began publishes no birth message, emits no connect, throws nothing and closes the connection',
    async (how) => {
      const broker = await lateBroker();
      const { log } = captureLogger();
      const session = new MqttSession(
        mqttConfigSchema.parse({ url: broker.url, protocol: '3.1.1', clientId: 'late' }),
        { log, birth: () => ({ topic: 'cfm/v1/S/d/status', payload: '{}', qos: 1, retain: true }) },
      );
      const uncaught: unknown[] = [];
      const onUncaught = (e: unknown) => uncaught.push(e);
      process.on('uncaughtException', onUncaught);
      cleanup.push(() => process.off('uncaughtException', onUncaught));
      let connects = 0;
      session.on('connect', () => connects++);
      session.start();
      await waitFor(() => broker.packets.includes(CONNECT), { what: 'CONNECT' });
      const stopped = how === 'stop' ? session.stop() : session.pause();
      broker.socket()?.write(CONNACK);
      await stopped;
      cleanup.push(() => void session.stop());
      // The client closes its connection; whatever it still read off it has been handled by then.
      await waitFor(broker.closed, { what: 'the client gone' });
      await new Promise((r) => setImmediate(r));
      expect(uncaught).toEqual([]);
      expect(broker.packets).not.toContain(PUBLISH);
      expect(connects).toBe(0);
    },
  );
});

describe('MqttSession stopping on a broker that does not close the connection after DISCONNECT', () => {
  it.each(['stop', 'pause'] as const)(
    '%s() closes it itself after connectTimeoutMs, says so, and resolves',
    async (how) => {
      const broker = await lateBroker(true);
      const { log, lines } = captureLogger();
      const session = new MqttSession(
        mqttConfigSchema.parse({
          url: broker.url,
          protocol: '3.1.1',
          clientId: 'stuck',
          connectTimeoutMs: 300,
        }),
        { log },
      );
      cleanup.push(() => void session.stop());
      session.start();
      await waitFor(() => broker.packets.includes(CONNECT), { what: 'CONNECT' });
      broker.socket()?.write(CONNACK);
      await session.waitConnected(5_000);
      // The broker reads the DISCONNECT and keeps the connection open: the session does not wait for ever.
      const t0 = Date.now();
      await (how === 'stop' ? session.stop() : session.pause());
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(broker.packets).toContain(0xe0);
      expect(lines.some((l) => /did not close after DISCONNECT/.test(String(l.msg)))).toBe(true);
    },
  );
});
