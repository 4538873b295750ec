import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pjlinkDigest, readPjlink } from '../../../agents/sources/pjlink.js';
import { type DisplayHealth, displaySchema } from '../../../contracts/messages.js';
import { PjlinkSimulator, type PjlinkState } from '../../../dev/pjlink-sim.js';
import { freePort, waitFor } from '../../../dev/ports.js';

const HOST = '127.0.0.1';
const PASSWORD = 'JBMIAProjectorLink';

let sims: PjlinkSimulator[] = [];
let servers: Server[] = [];

beforeEach(() => {
  sims = [];
  servers = [];
});

afterEach(async () => {
  await Promise.all(sims.map((s) => s.stop()));
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

async function startSim(init: Partial<PjlinkState> & { password?: string } = {}) {
  const sim = new PjlinkSimulator(init);
  sims.push(sim);
  const port = await sim.start();
  return { sim, port };
}

/** Reads and checks the contract: every successful read must be a valid `displaySchema` object. */
async function read(
  port: number,
  extra: { password?: string; timeoutMs?: number } = {},
): Promise<DisplayHealth> {
  const health = await readPjlink({ host: HOST, port, ...extra });
  expect(displaySchema.parse(health)).toEqual(health);
  return health;
}

/** Resolves with the rejection of `p`; fails the test if `p` resolves. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    return e as Error;
  }
  throw new Error('expected the read to reject');
}

describe('pjlinkDigest', () => {
  it('matches the worked example of the PJLink class 1 spec', () => {
    expect(pjlinkDigest('498e4a67', 'JBMIAProjectorLink')).toBe('5d8409bc1c3fa39749434aa3a5c38682');
  });
});

describe('readPjlink against a simulated projector', () => {
  it('reads power, input, lamp hours and errors of a projector that is on, over one connection', async () => {
    const { sim, port } = await startSim({ power: 1, input: '31', lampHours: 1873, errors: '000000' });
    expect(await read(port)).toEqual({
      source: 'pjlink',
      power: 'on',
      input: '31',
      lampHours: 1873,
      errors: { fan: 'ok', lamp: 'ok', temperature: 'ok', cover: 'ok', filter: 'ok', other: 'ok' },
    });
    expect(sim.connections).toBe(1);
  });

  it.each([
    [1, 'on'],
    [2, 'cooling'],
    [3, 'warming'],
  ] as const)('maps POWR=%i to %s', async (power, expected) => {
    const { port } = await startSim({ power, input: '11', lampHours: 42 });
    const health = await read(port);
    expect(health.power).toBe(expected);
    expect(health.input).toBe('11');
    expect(health.lampHours).toBe(42);
  });

  it('standby: power off, and INPT/LAMP answered ERR3 leave those fields out', async () => {
    const { port } = await startSim({ power: 0, lampHours: 1873, errors: '000000' });
    const health = await read(port);
    expect(health).toEqual({
      source: 'pjlink',
      power: 'off',
      errors: { fan: 'ok', lamp: 'ok', temperature: 'ok', cover: 'ok', filter: 'ok', other: 'ok' },
    });
    expect(health).not.toHaveProperty('input');
    expect(health).not.toHaveProperty('lampHours');
    expect(health).not.toHaveProperty('errorCodes');
  });

  it('follows state changes between reads, one connection per read', async () => {
    const { sim, port } = await startSim({ power: 0 });
    expect((await read(port)).power).toBe('off');
    sim.state.power = 3;
    expect((await read(port)).power).toBe('warming');
    sim.state.power = 1;
    sim.state.lampHours = 2001;
    expect(await read(port)).toMatchObject({ power: 'on', lampHours: 2001 });
    expect(sim.connections).toBe(3);
  });

  it('takes lamp 1 hours from a multi-lamp answer', async () => {
    const { port } = await startSim({ rawAnswers: { LAMP: '%1LAMP=12345 1 678 0' } });
    expect((await read(port)).lampHours).toBe(12345);
  });

  it.each([
    ['000010', { fan: 'ok', lamp: 'ok', temperature: 'ok', cover: 'ok', filter: 'warning', other: 'ok' }],
    [
      '012012',
      { fan: 'ok', lamp: 'warning', temperature: 'error', cover: 'ok', filter: 'warning', other: 'error' },
    ],
    ['210000', { fan: 'error', lamp: 'warning', temperature: 'ok', cover: 'ok', filter: 'ok', other: 'ok' }],
    ['000200', { fan: 'ok', lamp: 'ok', temperature: 'ok', cover: 'error', filter: 'ok', other: 'ok' }],
  ])('maps ERST=%s in the order fan, lamp, temperature, cover, filter, other', async (errors, expected) => {
    const { port } = await startSim({ errors });
    expect((await read(port)).errors).toEqual(expected);
  });

  it('a panel without a lamp (LAMP=ERR1) reads without lampHours', async () => {
    const { port } = await startSim({ power: 1, input: '32', lampHours: null });
    const health = await read(port);
    expect(health).toMatchObject({ power: 'on', input: '32' });
    expect(health).not.toHaveProperty('lampHours');
    expect(health).not.toHaveProperty('errorCodes');
  });

  it('POWR answered with an error gives power unknown; ERR4 is kept verbatim in errorCodes', async () => {
    const { port } = await startSim({ rawAnswers: { POWR: '%1POWR=ERR4' } });
    const health = await read(port);
    expect(health.power).toBe('unknown');
    expect(health.errorCodes).toEqual(['%1POWR=ERR4']);
    expect(health.input).toBe('31');

    const { port: port2 } = await startSim({ rawAnswers: { POWR: '%1POWR=ERR3' } });
    const health2 = await read(port2);
    expect(health2.power).toBe('unknown');
    expect(health2).not.toHaveProperty('errorCodes');
  });

  it('tolerates a slow device within timeoutMs', async () => {
    const { port } = await startSim({ delayMs: 50 });
    expect((await read(port, { timeoutMs: 3000 })).power).toBe('on');
  });
});

describe('readPjlink authentication', () => {
  it('authenticates with md5(random + password) and reads', async () => {
    const { sim, port } = await startSim({ password: PASSWORD, power: 1, lampHours: 7 });
    expect(await read(port, { password: PASSWORD })).toMatchObject({ power: 'on', lampHours: 7 });
    expect(sim.connections).toBe(1);
  });

  it('a wrong password rejects with PJLINK ERRA, naming host:port, never the password', async () => {
    const { port } = await startSim({ password: PASSWORD });
    const wrong = 'not-the-right-secret';
    const e = await rejection(readPjlink({ host: HOST, port, password: wrong }));
    expect(e.message).toBe(`PJLink ${HOST}:${port}: authentication failed (PJLINK ERRA)`);
    expect(e.message).not.toContain(wrong);
    expect(e.message).not.toContain(PASSWORD);
  });

  it('a device that requires a password while none is configured rejects clearly', async () => {
    const { port } = await startSim({ password: PASSWORD });
    const e = await rejection(readPjlink({ host: HOST, port }));
    expect(e.message).toMatch(new RegExp(`^PJLink ${HOST}:${port}: .*requires authentication.*no password`));
  });

  it('a password given to a device without authentication is simply not used', async () => {
    const { port } = await startSim();
    expect((await read(port, { password: PASSWORD })).power).toBe('on');
  });
});

describe('readPjlink failures name host:port and the reason', () => {
  it('nothing listening: rejects quickly with connection refused', async () => {
    const port = await freePort();
    const started = Date.now();
    const e = await rejection(readPjlink({ host: HOST, port, timeoutMs: 3000 }));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(e.message).toMatch(new RegExp(`^PJLink ${HOST}:${port}: connection refused`));
  });

  it('a silent device rejects within timeoutMs', async () => {
    const { sim, port } = await startSim({ silent: true });
    const timeoutMs = 300;
    const started = Date.now();
    const e = await rejection(readPjlink({ host: HOST, port, timeoutMs }));
    expect(Date.now() - started).toBeLessThan(timeoutMs + 1000);
    expect(e.message).toBe(`PJLink ${HOST}:${port}: timed out after 300 ms waiting for the greeting`);
    expect(sim.connections).toBe(1);
  });

  it('timeoutMs bounds the whole read, not each answer', async () => {
    // Four answers at 150 ms each take 600 ms; each alone is well within 400 ms.
    const { port } = await startSim({ delayMs: 150 });
    const timeoutMs = 400;
    const started = Date.now();
    const e = await rejection(readPjlink({ host: HOST, port, timeoutMs }));
    expect(Date.now() - started).toBeLessThan(timeoutMs + 1000);
    expect(e.message).toMatch(
      new RegExp(`^PJLink ${HOST}:${port}: timed out after 400 ms waiting for the answer`),
    );
  });

  it('a malformed value names the command and the raw line', async () => {
    const { port } = await startSim({ input: 'HDMI-1' });
    const e = await rejection(readPjlink({ host: HOST, port }));
    expect(e.message).toBe(`PJLink ${HOST}:${port}: malformed answer to %1INPT ?: "%1INPT=HDMI-1"`);
  });

  it('a malformed ERST (wrong digit count or level) is an error naming ERST', async () => {
    const { port } = await startSim({ errors: '0003' });
    const e = await rejection(readPjlink({ host: HOST, port }));
    expect(e.message).toContain('malformed answer to %1ERST ?: "%1ERST=0003"');

    const { port: port2 } = await startSim({ errors: '000300' });
    const e2 = await rejection(readPjlink({ host: HOST, port: port2 }));
    expect(e2.message).toContain('malformed answer to %1ERST ?');
  });

  it('a garbage line names the command and quotes the raw line cut to 100 characters', async () => {
    const garbage = `garbage ${'x'.repeat(200)}`;
    const { port } = await startSim({ rawAnswers: { LAMP: garbage } });
    const e = await rejection(readPjlink({ host: HOST, port }));
    expect(e.message).toBe(
      `PJLink ${HOST}:${port}: malformed answer to %1LAMP ?: ${JSON.stringify(garbage.slice(0, 100))}…`,
    );
  });

  it('an answer for another command is malformed', async () => {
    const { port } = await startSim({ rawAnswers: { POWR: '%1INPT=31' } });
    const e = await rejection(readPjlink({ host: HOST, port }));
    expect(e.message).toContain('malformed answer to %1POWR ?: "%1INPT=31"');
  });

  it('a peer that is not PJLink (wrong port) is an error quoting its greeting', async () => {
    // A real non-PJLink service on the configured port, e.g. an SSH daemon: it speaks first, with a banner.
    const server = createServer((socket) => socket.end('SSH-2.0-OpenSSH_9.6\r\n'));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    const port = (server.address() as AddressInfo).port;
    const e = await rejection(readPjlink({ host: HOST, port }));
    expect(e.message).toBe(`PJLink ${HOST}:${port}: unexpected greeting "SSH-2.0-OpenSSH_9.6"`);
  });

  it('the device hanging up mid-read rejects with connection closed', async () => {
    const { sim, port } = await startSim({ delayMs: 10_000 });
    const pending = rejection(readPjlink({ host: HOST, port, timeoutMs: 5000 }));
    await waitFor(() => sim.connections === 1, { what: 'the connection' });
    const started = Date.now();
    await sim.stop();
    const e = await pending;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(e.message).toMatch(
      new RegExp(`^PJLink ${HOST}:${port}: (connection closed by the device|connection reset)`),
    );
  });
});

describe('PjlinkSimulator', () => {
  it('greets with PJLINK 0 and answers unknown commands with ERR1, in order', async () => {
    const { port } = await startSim();
    const socket = connect(port, HOST);
    socket.setEncoding('latin1');
    let received = '';
    socket.on('data', (d: string) => {
      received += d;
    });
    socket.write('%1XYZW ?\r%1CLSS ?\r');
    await waitFor(() => received.split('\r').length > 3, { timeoutMs: 3000, what: 'three answers' });
    socket.destroy();
    expect(received).toBe('PJLINK 0\r%1XYZW=ERR1\r%1CLSS=1\r');
  });
});
