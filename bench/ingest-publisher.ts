// Child process of bench/ingest.ts: publishes the benchmark's messages at full speed, QoS 1, over several
// connections. Protocol over IPC: parent sends the job, child answers 'ready'; parent sends 'go', child
// answers {publishedMs, cpuS} when every PUBACK is in (cpuS: this process's CPU-seconds since 'go').
//
// A load generator, not an agent: it stands for thousands of agents on machines of their own, yet shares the
// collector's core in the pinned runs, so it should cost that core as little as it can. Every PUBLISH packet
// (MQTT 5, QoS 1, its own packet id) is encoded by mqtt-packet — the encoder mqtt.js uses — before 'go'; after
// it, each connection writes its packets in slices of half its window and sends the next slice as PUBACKs
// come back, at most WINDOW unacknowledged (until #18's ninth sitting it was mqtt.js's publishAsync, a promise
// and a packet object per message: 0.19 CPU-s per 10,000 messages on the shared core, against 0.03 now).
// It writes a slice as one socket write, so the broker reads and forwards in larger pieces than before.
// The broker sees what it saw before: the same packets on the same connections, every one acknowledged.
import { connect, type Socket } from 'node:net';
import { generate, parser as packetParser } from 'mqtt-packet';
import { makeTelemetry, topicFor } from './fixtures.js';

const CONNECTIONS = 8;
const WINDOW = 500; // outstanding QoS 1 publishes per connection
const SLICE = WINDOW / 2;

type Job = { url: string; messages: number; devices: number; t0: number };

interface Connection {
  socket: Socket;
  /** This connection's PUBLISH packets, in slices of SLICE packets, each slice one buffer. */
  slices: Buffer[];
  messages: number;
  /** PUBACKs received; called with the running count. */
  onAck: (acked: number) => void;
}

/**
 * An MQTT 5 connection on a socket of its own, once the broker accepted it (CONNACK, reason 0). No keepalive
 * (it sends no PINGREQ; the bench may wait minutes for influxd to settle between 'ready' and 'go'). Anything
 * that ends the connection or refuses a message before the last PUBACK fails the publisher — the bench sees it
 * exit — instead of leaving it waiting.
 */
function open(url: string, clientId: string): Promise<Connection> {
  const u = new URL(url);
  const socket = connect(Number(u.port || 1883), u.hostname);
  socket.setNoDelay(true);
  const parser = packetParser({ protocolVersion: 5 });
  const c: Connection = { socket, slices: [], messages: 0, onAck: () => {} };
  let acked = 0;
  let connected = false;
  const fail = (why: string) => {
    console.error(`bench publisher ${clientId}: ${why}`);
    process.exit(1);
  };
  return new Promise((resolve) => {
    socket.on('error', (e) => fail(e.message));
    socket.on('close', () => {
      if (acked < c.messages || !connected) fail(`connection closed after ${acked} of ${c.messages} PUBACKs`);
    });
    parser.on('error', (e) => fail(`unreadable packet from the broker: ${e.message}`));
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') {
        if (p.reasonCode) return fail(`CONNACK reason ${p.reasonCode}`);
        connected = true;
        resolve(c);
      } else if (p.cmd === 'puback') {
        // Below 0x80 is success (0x10: no matching subscribers — the collector is away; the bench then fails on
        // the count of what it stored, not here).
        if ((p.reasonCode ?? 0) >= 0x80) fail(`PUBACK reason ${p.reasonCode}`);
        c.onAck(++acked);
      } else if (p.cmd === 'disconnect') fail(`DISCONNECT from the broker, reason ${p.reasonCode}`);
    });
    socket.on('data', (b) => parser.parse(b));
    socket.on('connect', () =>
      socket.write(
        generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 5,
          clientId,
          clean: true,
          keepalive: 0,
        }),
      ),
    );
  });
}

let connections: Connection[] = [];

process.on('message', async (m: Job | 'go') => {
  if (m !== 'go') {
    connections = await Promise.all(
      Array.from({ length: CONNECTIONS }, (_, k) => open(m.url, `bench-pub-${k}`)),
    );
    // Message i goes on connection i % CONNECTIONS, as before; packet ids 1, 2, … per connection.
    connections.forEach((c, k) => {
      let slice: Buffer[] = [];
      let id = 0;
      for (let i = k; i < m.messages; i += CONNECTIONS) {
        const payload = Buffer.from(JSON.stringify(makeTelemetry(i, m.devices, m.t0)));
        slice.push(
          generate(
            {
              cmd: 'publish',
              topic: topicFor(i, m.devices),
              payload,
              qos: 1,
              messageId: (id++ % 65_535) + 1,
              retain: false,
              dup: false,
            },
            { protocolVersion: 5 },
          ),
        );
        if (slice.length === SLICE) {
          c.slices.push(Buffer.concat(slice));
          slice = [];
        }
      }
      if (slice.length) c.slices.push(Buffer.concat(slice));
      c.messages = id;
    });
    process.send!('ready');
    return;
  }
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    connections.map(
      (c) =>
        new Promise<void>((resolve) => {
          // Two slices (the window) at once, then a slice each time a slice's worth of PUBACKs is in.
          let sent = 0;
          const send = () => {
            if (sent < c.slices.length) c.socket.write(c.slices[sent++]!);
          };
          c.onAck = (acked) => {
            if (acked === c.messages) resolve();
            else if (acked % SLICE === 0) send();
          };
          if (c.messages === 0) resolve();
          send();
          send();
        }),
    ),
  );
  const cpu = process.cpuUsage(cpu0);
  process.send!({ publishedMs: performance.now() - started, cpuS: (cpu.user + cpu.system) / 1e6 });
  await Promise.all(
    connections.map(
      (c) =>
        new Promise<void>((resolve) =>
          c.socket.end(generate({ cmd: 'disconnect' }, { protocolVersion: 5 }), resolve),
        ),
    ),
  );
  process.exit(0);
});
