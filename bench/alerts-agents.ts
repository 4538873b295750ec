// Child process of bench/alerts.ts: N classroom agents as MQTT sees them (birth retained, will registered),
// all in this one process, so that stopping the process (SIGSTOP) silences every connection at once without
// closing any: the broker notices each death only by its keepalive, as with a PC that lost power.
// IPC: parent sends {url, devices: [{school, device}], keepaliveS}; child answers 'ready'.
import mqtt from 'mqtt';

process.once(
  'message',
  async (m: {
    url: string;
    devices: { school: string; device: string; password?: string }[];
    keepaliveS: number;
  }) => {
    const status = (state: string) =>
      JSON.stringify({
        v: 1,
        ts: Date.now(),
        state,
        kind: 'panel',
        heartbeatS: 60,
        ...(state === 'offline' ? { reason: 'will' } : {}),
      });
    await Promise.all(
      m.devices.map(async ({ school, device, password }) => {
        const topic = `cfm/v1/${school}/${device}/status`;
        const c = await mqtt.connectAsync(m.url, {
          clientId: device,
          ...(password ? { username: device, password } : {}),
          keepalive: m.keepaliveS,
          reconnectPeriod: 0,
          will: { topic, payload: Buffer.from(status('offline')), qos: 1, retain: true },
        });
        await c.publishAsync(topic, status('online'), { qos: 1, retain: true });
      }),
    );
    process.send!('ready');
  },
);
