import { createSocket, type Socket, type SocketType } from 'node:dgram';
import snmp from 'net-snmp';
import { z } from 'zod';
import { secret } from '../../common/redact.js';
import { idSchema, regionPathSchema } from '../../contracts/ids.js';
import { deviceKindSchema } from '../../contracts/messages.js';

/**
 * One SNMP target (a school's router or L3 switch) and a small promise API over net-snmp: GET of scalars and a
 * multi-column GetBulk walk. Every error names its target, so a poll cycle's log says which school is broken.
 */
export const v3Schema = z.strictObject({
  user: z.string().min(1).max(32).describe('USM user name.'),
  level: z
    .enum(['authPriv', 'authNoPriv'])
    .default('authPriv')
    .describe('Security level; noAuthNoPriv is not offered.'),
  authProtocol: z
    .enum(['sha', 'sha224', 'sha256', 'sha384', 'sha512'])
    .default('sha')
    .describe('HMAC for auth.'),
  authKey: secret(z.string().min(8)).describe('Auth password (≥ 8 characters, RFC 3414).'),
  privProtocol: z
    .enum(['aes', 'aes256b', 'aes256r'])
    .default('aes')
    .describe('Privacy (encryption) protocol.'),
  privKey: secret(z.string().min(8)).optional().describe('Privacy password (≥ 8 characters).'),
});

export const snmpTargetSchema = z
  .strictObject({
    device: idSchema.describe('Device id of the router/switch (a topic level).'),
    school: idSchema.describe('School whose uplink this is.'),
    region: regionPathSchema
      .optional()
      .describe("The school's region path, e.g. `330000/330100/330106` (for `shard.regions`)."),
    kind: deviceKindSchema.default('router'),
    address: z.string().min(1).describe('IP address or host name.'),
    port: z.number().int().min(1).max(65_535).default(161),
    version: z.enum(['2c', '3']).default('2c'),
    community: secret(z.string().min(1)).optional().describe('v2c community.'),
    v3: v3Schema.optional(),
    uplink: z
      .union([z.string().min(1), z.number().int().min(1)])
      .describe('The school uplink: its ifName (e.g. `GigabitEthernet0/0/1`) or ifIndex.'),
    intervalS: z.number().int().min(5).max(3_600).default(60).describe('Poll interval.'),
    timeoutMs: z.number().int().min(100).max(60_000).default(2_000).describe('Per-request timeout.'),
    retries: z.number().int().min(0).max(5).default(1).describe('Re-sends of a request that got no answer.'),
    maxRepetitions: z.number().int().min(1).max(200).default(25).describe('GetBulk max-repetitions.'),
  })
  .refine((t) => (t.version === '2c' ? t.community !== undefined : t.v3 !== undefined), {
    message: 'version 2c needs `community`, version 3 needs `v3`',
    path: ['version'],
  })
  .refine((t) => t.version !== '3' || t.v3?.level !== 'authPriv' || t.v3.privKey !== undefined, {
    message: 'authPriv needs `v3.privKey`',
    path: ['v3', 'privKey'],
  });
export type SnmpTarget = z.infer<typeof snmpTargetSchema>;

export class SnmpError extends Error {
  override name = 'SnmpError';
  constructor(
    readonly target: string,
    readonly reason: 'timeout' | 'auth' | 'protocol' | 'other',
    message: string,
  ) {
    super(`SNMP ${target}: ${message}`);
  }
}

export type SnmpValue = snmp.VarbindValue;
/** column OID → (row index → value). */
export type ColumnData = Map<string, Map<string, SnmpValue>>;

const AUTH: Record<string, snmp.AuthProtocols> = {
  sha: snmp.AuthProtocols.sha,
  sha224: snmp.AuthProtocols.sha224,
  sha256: snmp.AuthProtocols.sha256,
  sha384: snmp.AuthProtocols.sha384,
  sha512: snmp.AuthProtocols.sha512,
};
const PRIV: Record<string, snmp.PrivProtocols> = {
  aes: snmp.PrivProtocols.aes,
  aes256b: snmp.PrivProtocols.aes256b,
  aes256r: snmp.PrivProtocols.aes256r,
};

/**
 * Compares dotted OIDs numerically (string order would put .10 before .9), from character `from` on (both OIDs
 * must agree before it, e.g. a shared column prefix). Allocation-free: it reads each sub-identifier's digits in
 * place rather than splitting the strings, as the walk compares every varbind with the last one of its column.
 */
export function compareOids(a: string, b: string, from = 0): number {
  let i = from;
  let j = from;
  for (;;) {
    const aEnd = i >= a.length;
    const bEnd = j >= b.length;
    if (aEnd || bEnd) return aEnd && bEnd ? 0 : aEnd ? -1 : 1;
    let x = 0;
    for (let c = a.charCodeAt(i); i < a.length && c !== 46; c = a.charCodeAt(++i)) x = x * 10 + (c - 48);
    let y = 0;
    for (let c = b.charCodeAt(j); j < b.length && c !== 46; c = b.charCodeAt(++j)) y = y * 10 + (c - 48);
    if (x !== y) return x - y;
    i++; // past the dot
    j++;
  }
}

/**
 * The row index after a column prefix when it is one sub-identifier (IF-MIB's ifIndex), else -1: the walk then
 * compares it with the previous row's as a number, parsing each OID once.
 */
function singleIndex(oid: string, from: number): number {
  if (from >= oid.length || oid.length - from > 15) return -1; // empty, or beyond exact integers
  let n = 0;
  for (let i = from; i < oid.length; i++) {
    const c = oid.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/** A target on the loopback network: its answers can only come from there. */
const isLoopback = (address: string) => /^127\.\d+\.\d+\.\d+$/.test(address) || address === 'localhost';

export class SnmpClient {
  private session: snmp.Session | undefined;
  /** The session's UDP socket (net-snmp creates it through `dgramModule`). */
  private socket: Socket | undefined;
  /** +1 per close(): a walk started before a close stops instead of opening a new session for its next request. */
  private generation = 0;
  readonly label: string;
  /**
   * The local address the session's UDP socket binds: `poller.sourceAddress` when configured; 127.0.0.1 for a
   * target on loopback; otherwise none, and the kernel binds all interfaces (0.0.0.0) at the first request.
   * The socket receives the answers, so an unbound one takes datagrams on every interface of the host.
   */
  readonly sourceAddress: string | undefined;

  constructor(
    readonly target: SnmpTarget,
    opts: { sourceAddress?: string | undefined } = {},
  ) {
    this.label = `${target.address}:${target.port} (${target.school}/${target.device})`;
    this.sourceAddress = opts.sourceAddress ?? (isLoopback(target.address) ? '127.0.0.1' : undefined);
  }

  /** The address and port the session's socket is bound to; undefined before the first request. */
  localAddress(): { address: string; port: number } | undefined {
    try {
      return this.socket?.address();
    } catch {
      return undefined; // not bound yet
    }
  }

  private open(): snmp.Session {
    if (this.session) return this.session;
    const t = this.target;
    const common = {
      port: t.port,
      retries: t.retries,
      timeout: t.timeoutMs,
      transport: 'udp4' as const,
      // An ephemeral port on that address (net-snmp binds when either source option is set).
      ...(this.sourceAddress ? { sourceAddress: this.sourceAddress } : {}),
      dgramModule: { createSocket: (type: SocketType) => (this.socket = createSocket(type)) },
    };
    if (t.version === '2c') {
      this.session = snmp.createSession(t.address, t.community!, { ...common, version: snmp.Version2c });
    } else {
      const v = t.v3!;
      const user: snmp.User = {
        name: v.user,
        level: v.level === 'authPriv' ? snmp.SecurityLevel.authPriv : snmp.SecurityLevel.authNoPriv,
        authProtocol: AUTH[v.authProtocol]!,
        authKey: v.authKey,
        ...(v.level === 'authPriv' ? { privProtocol: PRIV[v.privProtocol]!, privKey: v.privKey! } : {}),
      };
      this.session = snmp.createV3Session(t.address, user, { ...common, version: snmp.Version3 });
    }
    this.session.on('error', () => {
      // socket errors surface as request errors; keep the session from throwing on its own
    });
    return this.session;
  }

  /** Closes the socket; a request in flight fails at once (net-snmp cancels it), and so does its walk. */
  close(): void {
    this.generation++;
    this.session?.close();
    this.session = undefined;
    this.socket = undefined;
  }

  private wrap(err: unknown): SnmpError {
    const e = err as Error & { name?: string };
    const msg = e?.message ?? String(err);
    if (e?.name === 'RequestTimedOutError' || /timed out/i.test(msg)) {
      const totalMs = this.target.timeoutMs * (this.target.retries + 1);
      return new SnmpError(
        this.label,
        'timeout',
        `no answer within ${totalMs} ms (unreachable, or a wrong community / v3 user)`,
      );
    }
    if (/digest|authentic|decrypt|unknown user|usmStats/i.test(msg)) {
      return new SnmpError(this.label, 'auth', `authentication failed (${msg})`);
    }
    return new SnmpError(this.label, 'other', msg);
  }

  /** GET of scalar OIDs; a missing object (noSuchObject/noSuchInstance) comes back as undefined. */
  get(oids: readonly string[]): Promise<(SnmpValue | undefined)[]> {
    const session = this.open();
    return new Promise((resolve, reject) => {
      session.get([...oids], (err, varbinds) => {
        if (err) return reject(this.wrap(err));
        resolve((varbinds ?? []).map((vb) => (snmp.isVarbindError(vb) ? undefined : vb.value)));
      });
    });
  }

  /** One GetBulk: the first `nonRepeaters` answers are single varbinds, the rest arrays (one per repeater). */
  private bulk(
    oids: string[],
    nonRepeaters: number,
    maxRepetitions: number,
  ): Promise<(snmp.Varbind | snmp.Varbind[])[]> {
    const session = this.open();
    return new Promise((resolve, reject) => {
      session.getBulk(oids, nonRepeaters, maxRepetitions, (err, varbinds) => {
        if (err) return reject(this.wrap(err));
        resolve((varbinds ?? []) as unknown as (snmp.Varbind | snmp.Varbind[])[]);
      });
    });
  }

  /** walk() without scalars. */
  async walkColumns(
    columns: readonly string[],
    maxRepetitions = this.target.maxRepetitions,
  ): Promise<ColumnData> {
    return (await this.walk(columns, [], maxRepetitions)).columns;
  }

  /**
   * Walks several table columns at once with GetBulk, the way `snmpbulkwalk` walks one: each request asks for
   * the next `maxRepetitions` rows of every column not yet finished, continuing from the last OID returned.
   * An agent may return fewer rows than asked (message size), so a column ends only when a returned OID leaves
   * it or the agent reports endOfMibView. Rows are keyed by the index part of the OID (after the column).
   *
   * `scalars` (instance OIDs ending in `.0`, such as sysUpTime.0) ride in the first request as GetBulk
   * non-repeaters (a GetNext of the object), so they are read in the same PDU as the first rows: sysUpTime is
   * then stamped by the agent with the counters it times, and a poll costs one round trip less. A scalar the
   * agent lacks comes back undefined. `firstAnswerAtMs` is when that first answer arrived (performance.now()).
   */
  async walk(
    columns: readonly string[],
    scalars: readonly string[] = [],
    maxRepetitions = this.target.maxRepetitions,
  ): Promise<{ columns: ColumnData; scalars: (SnmpValue | undefined)[]; firstAnswerAtMs: number }> {
    const out: ColumnData = new Map(columns.map((c) => [c, new Map()]));
    const scalarValues: (SnmpValue | undefined)[] = scalars.map(() => undefined);
    let firstAnswerAtMs = Number.NaN;
    // `index`: the last row's single-sub-identifier index, -1 before the first row or when it had several.
    let cursors = columns.map((c) => ({ column: c, prefix: `${c}.`, next: c, index: -1 }));
    const generation = this.generation;
    for (let round = 0; cursors.length > 0 || round === 0; round++) {
      if (round > 10_000) throw new SnmpError(this.label, 'protocol', 'walk did not terminate');
      if (generation !== this.generation) throw new SnmpError(this.label, 'other', 'client closed');
      const nonRep = round === 0 ? scalars.map((o) => o.replace(/\.0$/, '')) : [];
      const raw = await this.bulk([...nonRep, ...cursors.map((c) => c.next)], nonRep.length, maxRepetitions);
      if (round === 0) {
        firstAnswerAtMs = performance.now();
        scalars.forEach((oid, i) => {
          const vb = raw[i] as snmp.Varbind | undefined;
          if (vb && !snmp.isVarbindError(vb) && vb.oid === oid) scalarValues[i] = vb.value;
        });
      }
      const answer = raw.slice(nonRep.length) as snmp.Varbind[][];
      if (cursors.length === 0) break;
      // A truncated answer may hold no varbind at all for the last columns (RFC 3416 §4.2.3; net-snmp's agent
      // caps the whole answer at max-repetitions varbinds): those columns are simply asked again next round.
      if (answer.every((vbs) => (vbs?.length ?? 0) === 0)) {
        throw new SnmpError(this.label, 'protocol', 'empty GetBulk response');
      }
      const still: typeof cursors = [];
      for (let i = 0; i < cursors.length; i++) {
        const cur = cursors[i]!;
        const vbs = answer[i] ?? [];
        const rows = out.get(cur.column)!;
        const prefixLength = cur.prefix.length;
        let done = false;
        for (const vb of vbs) {
          const oid = vb.oid;
          if (snmp.isVarbindError(vb) || !oid.startsWith(cur.prefix)) {
            done = true;
            break;
          }
          // Both lie in the column (the cursor starts at the column itself): compare the row indexes only.
          const index = singleIndex(oid, prefixLength);
          const increasing =
            index >= 0 && cur.index >= 0 ? index > cur.index : compareOids(oid, cur.next, prefixLength) > 0;
          if (!increasing) {
            throw new SnmpError(this.label, 'protocol', `OID not increasing in ${cur.column}: ${oid}`);
          }
          rows.set(oid.slice(prefixLength), vb.value);
          cur.next = oid;
          cur.index = index;
        }
        if (!done) still.push(cur);
      }
      cursors = still;
    }
    return { columns: out, scalars: scalarValues, firstAnswerAtMs };
  }
}
