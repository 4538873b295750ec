import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Network namespaces a test creates and always removes: a namespace joined to this host by a veth pair on a
 * /29 of 10.x.y.0 (x, y from the pid and a counter, so parallel runs differ), or by a userspace delay line
 * (`delayLine`). Needs root and iproute2 (CI runs as root on Debian); without them the test fails, naming
 * what is missing — it never skips.
 */
let seq = 0;

export async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args, { timeout: 10_000 })).stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}

/**
 * A name and a /29 no other run on this host picks: `cfm<pid>n<counter>` (the separator keeps pid 3710's 21st
 * from being pid 37102's 1st; at most 15 characters with its one-letter suffix for pids up to 4,194,304 and
 * counters below 100), and 10.x.y.z/29 with x, y from the pid and the block z from the counter, so two
 * processes share a subnet only when their pids differ by a multiple of 25,600. A process has 32 blocks.
 */
function uniq(): { name: string; base: string } {
  const n = seq++;
  if (n >= 32) throw new Error('netns helper: more than 32 namespaces in one test process (one /29 each)');
  const pid = process.pid;
  const x = 100 + (pid % 100);
  const y = Math.floor(pid / 100) % 256;
  return { name: `cfm${pid}n${n}`, base: `10.${x}.${y}.${n * 8}` };
}

/** The n-th address of a /29 whose first address is `base`. */
function at(base: string, n: number): string {
  const parts = base.split('.').map(Number);
  return `${parts[0]}.${parts[1]}.${parts[2]}.${parts[3]! + n}`;
}

export interface Netns {
  name: string;
  /** This host's end, and the namespace's. */
  hostAddress: string;
  nsAddress: string;
  /** In the /29, routed into the namespace's link, and nobody has it: probes of it go unanswered. */
  silentAddress: string;
  exec(cmd: string, args: string[]): Promise<string>;
  destroy(): Promise<void>;
}

/** A namespace on a veth pair: host .1, namespace .2, nobody .5 (ARP fails: no answer). */
export async function vethNamespace(): Promise<Netns> {
  if (process.getuid?.() !== 0) throw new Error('network namespace tests need root (CI runs as root)');
  const { name, base } = uniq();
  const ns: Netns = {
    name,
    hostAddress: at(base, 1),
    nsAddress: at(base, 2),
    silentAddress: at(base, 5),
    exec: (cmd, args) => sh('ip', ['netns', 'exec', name, cmd, ...args]),
    destroy: async () => {
      // Deleting the namespace deletes its veth end, and so the pair.
      await sh('ip', ['netns', 'del', name]).catch(() => undefined);
      await sh('ip', ['link', 'del', `${name}h`]).catch(() => undefined);
    },
  };
  try {
    await sh('ip', ['netns', 'add', name]);
    await sh('ip', ['link', 'add', `${name}h`, 'type', 'veth', 'peer', 'name', `${name}n`]);
    await sh('ip', ['link', 'set', `${name}n`, 'netns', name]);
    await sh('ip', ['addr', 'add', `${ns.hostAddress}/29`, 'dev', `${name}h`]);
    await sh('ip', ['link', 'set', `${name}h`, 'up']);
    await ns.exec('ip', ['addr', 'add', `${ns.nsAddress}/29`, 'dev', `${name}n`]);
    await ns.exec('ip', ['link', 'set', `${name}n`, 'up']);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
  } catch (e) {
    await ns.destroy();
    throw e;
  }
  return ns;
}

/**
 * Drops `pct` % of the ICMP echo requests arriving in the namespace, at random (nftables `numgen random`), as
 * a lossy link would.
 */
export async function dropEchoes(ns: Netns, pct: number): Promise<void> {
  const t = 'cfmloss';
  await ns.exec('nft', ['add', 'table', 'inet', t]);
  await ns.exec('nft', [
    'add chain inet cfmloss input { type filter hook input priority 0 ; policy accept ; }',
  ]);
  await ns.exec('nft', [
    `add rule inet cfmloss input icmp type echo-request numgen random mod 100 < ${pct} drop`,
  ]);
}

/**
 * A userspace delay line, since the netem qdisc is missing on these machines: two TUN devices, one on this host
 * and one in a new namespace, joined by a small Python process that holds every IP packet `oneWayMs` (plus a
 * uniform random 0..`jitterMs`, never reordering) before passing it on. Both ICMP echoes and the TCP handshake
 * cross it, so a round trip takes at least 2 × oneWayMs — what a relay at the TCP level cannot do (the kernel
 * completes a handshake before any process sees the connection). Host .1, namespace .2 of a /29 block, as /32 peers.
 */
export async function delayLine(
  oneWayMs: number,
  jitterMs = 0,
): Promise<Netns & { packets(): Promise<number> }> {
  if (process.getuid?.() !== 0) throw new Error('network namespace tests need root (CI runs as root)');
  const { name, base } = uniq();
  const hostTun = `${name}a`;
  const nsTun = `${name}b`;
  const child: ChildProcess = spawn(
    'python3',
    ['-u', '-c', DELAY_PY, hostTun, nsTun, String(oneWayMs), String(jitterMs)],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let buf = '';
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    let i = buf.indexOf('\n');
    while (i >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(l);
      else lines.push(l);
      i = buf.indexOf('\n');
    }
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      waiters.push(resolve);
      void exited.then(() => reject(new Error(`delay line (python3) exited: ${stderr.trim()}`)));
    });
  const ns: Netns & { packets(): Promise<number> } = {
    name,
    hostAddress: at(base, 1),
    nsAddress: at(base, 2),
    silentAddress: at(base, 3),
    exec: (cmd, args) => sh('ip', ['netns', 'exec', name, cmd, ...args]),
    packets: async () => {
      child.stdin!.write('n\n');
      return Number(await nextLine());
    },
    destroy: async () => {
      child.stdin!.end();
      child.kill('SIGKILL');
      await exited;
      await sh('ip', ['netns', 'del', name]).catch(() => undefined);
    },
  };
  try {
    const ready = await nextLine();
    if (ready !== 'ready') throw new Error(`delay line: ${ready} ${stderr}`);
    await sh('ip', ['netns', 'add', name]);
    await sh('ip', ['link', 'set', nsTun, 'netns', name]);
    // The namespace's side first: the host sends on its side as soon as it is up (IPv6 solicitations), and
    // the line must have somewhere to deliver them. (A write to a TUN device that is down fails with EIO; the
    // line drops such a packet, but once it exited on it, taking both devices along.)
    await ns.exec('ip', ['addr', 'add', ns.nsAddress, 'peer', ns.hostAddress, 'dev', nsTun]);
    await ns.exec('ip', ['link', 'set', nsTun, 'up']);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    await sh('ip', ['addr', 'add', ns.hostAddress, 'peer', ns.nsAddress, 'dev', hostTun]);
    await sh('ip', ['link', 'set', hostTun, 'up']);
  } catch (e) {
    await ns.destroy();
    const why = stderr.trim();
    throw new Error(`${(e as Error).message}${why ? ` (delay line: ${why})` : ''}`);
  }
  return ns;
}

// TUNSETIFF with IFF_TUN | IFF_NO_PI (linux/if_tun.h). Each direction is FIFO: a packet leaves no earlier than
// the one before it, so jitter never reorders. stdin: `n` asks for the count of packets passed; EOF ends it.
const DELAY_PY = `
import errno, fcntl, os, struct, sys, select, time, heapq, random
def tun(name):
    fd = os.open('/dev/net/tun', os.O_RDWR)
    fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', name.encode(), 0x0001 | 0x1000))
    return fd
a, b = tun(sys.argv[1]), tun(sys.argv[2])
delay, jitter = float(sys.argv[3]) / 1000, float(sys.argv[4]) / 1000
print('ready', flush=True)
q, seq, last, passed = [], 0, {a: 0.0, b: 0.0}, 0
while True:
    timeout = max(0.0, q[0][0] - time.monotonic()) if q else None
    r, _, _ = select.select([a, b, 0], [], [], timeout)
    for fd in r:
        if fd == 0:
            line = sys.stdin.readline()
            if not line:
                sys.exit(0)
            print(passed, flush=True)
            continue
        pkt = os.read(fd, 65535)
        out = b if fd == a else a
        due = max(time.monotonic() + delay + random.uniform(0, jitter), last[out])
        last[out] = due
        heapq.heappush(q, (due, seq, out, pkt))
        seq += 1
    while q and q[0][0] <= time.monotonic():
        _, _, out, pkt = heapq.heappop(q)
        try:
            os.write(out, pkt)
            passed += 1
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            # that side is down: the packet is lost, as on a link whose far end is down
`;
