// Child process of bench/alerts.ts: N classroom agents as MQTT sees them (birth retained, will registered),
// all in this one process, so that stopping the process (SIGSTOP) silences every connection at once without
// closing any: the broker notices each death only by its keepalive, as with a PC that lost power.
// IPC: parent sends {url, devices: [{school, device, password?}], keepaliveS}; child answers 'ready'.
import { connectPresence } from '../dev/presence.js';

process.once(
  'message',
  async (m: {
    url: string;
    devices: { school: string; device: string; password?: string }[];
    keepaliveS: number;
  }) => {
    await Promise.all(m.devices.map((d) => connectPresence(m.url, { ...d, keepaliveS: m.keepaliveS })));
    process.send!('ready');
  },
);
