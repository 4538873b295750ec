import { createSocket, type Socket, type SocketType } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { performance } from 'node:perf_hooks';
import snmp from 'net-snmp';

/**
 * A scripted SNMP v1/v2c agent on 127.0.0.1, for tests of the poller and for `bench:snmp`. It is net-snmp's own
 * agent (`snmp.createAgent`) over real UDP, serving SNMPv2-MIB system scalars and IF-MIB ifTable / ifXTable rows
 * that a test changes between two polls (`setCounters`, `advance`, `setOperStatus`, `reboot`, …).
 *
 * Sources: SNMPv2-MIB (RFC 3418), IF-MIB (RFC 2863), SMIv2 types (RFC 2578).
 */
export interface SimIface {
  /** IF-MIB::ifIndex, the row index of both tables. */
  index: number;
  /** IF-MIB::ifName (ifXTable). */
  name: string;
  /** IF-MIB::ifAlias (ifXTable); '' when absent. */
  alias?: string;
  /** IF-MIB::ifDescr (ifTable); `name` when absent. */
  descr?: string;
  /** IF-MIB::ifHighSpeed (Mbit/s); ifSpeed is derived from it. */
  highSpeedMbps: number;
  /** IF-MIB::ifOperStatus: 1 up, 2 down, 3 testing, 4 unknown, 5 dormant, 6 notPresent, 7 lowerLayerDown. */
  operStatus: 1 | 2 | 3 | 4 | 5 | 6 | 7;
  /** 64-bit octet counters (ifHCInOctets / ifHCOutOctets); ifInOctets / ifOutOctets show them mod 2^32. */
  inOctets: bigint;
  outOctets: bigint;
  inErrors?: number;
  outErrors?: number;
  inDiscards?: number;
  /** IF-MIB::ifCounterDiscontinuityTime (a sysUpTime value, TimeStamp); 0 when absent. */
  discontinuityTicks?: number;
}

export interface SimOptions {
  /** The one v1/v2c community answered; a request with any other is dropped (the manager times out). */
  community?: string;
  ifaces: SimIface[];
  /** Serve only ifTable (32-bit ifInOctets/ifOutOctets, ifSpeed), as an old device without IF-MIB ifXTable. */
  noIfXTable?: boolean;
  sysName?: string;
  sysDescr?: string;
  /** Send every response this late, as a slow device would (the request is processed on arrival). */
  delayMs?: number;
  /** The loopback address it answers on, default 127.0.0.1 (several sims on 127.0.0.x may share a port). */
  address?: string;
  /** The UDP port, default an ephemeral one. */
  port?: number;
  /**
   * Also listen on a TCP port of its address — the router's management port (SSH, HTTPS on a real one), for a
   * TCP probe: each connection is accepted and closed. Closed while the sim is stopped (a connect is refused),
   * the same port again on restart; `tcpPort` says which.
   */
  managementTcp?: boolean;
}

// SNMPv2-MIB::system scalars; the provider OID is the object, the instance is `.0`.
const SYS_DESCR = '1.3.6.1.2.1.1.1'; // SNMPv2-MIB::sysDescr
const SYS_UPTIME = '1.3.6.1.2.1.1.3'; // SNMPv2-MIB::sysUpTime (TimeTicks)
const SYS_NAME = '1.3.6.1.2.1.1.5'; // SNMPv2-MIB::sysName
// Table providers register at the entry node, not the table node.
const IF_ENTRY = '1.3.6.1.2.1.2.2.1'; // IF-MIB::ifEntry
const IFX_ENTRY = '1.3.6.1.2.1.31.1.1.1'; // IF-MIB::ifXEntry (AUGMENTS ifEntry)

/** ifTable columns served, in row-array order. */
const IF_COLUMNS = [
  { number: 1, name: 'ifIndex', type: snmp.ObjectType.Integer },
  { number: 2, name: 'ifDescr', type: snmp.ObjectType.OctetString },
  { number: 5, name: 'ifSpeed', type: snmp.ObjectType.Gauge32 },
  { number: 8, name: 'ifOperStatus', type: snmp.ObjectType.Integer },
  { number: 10, name: 'ifInOctets', type: snmp.ObjectType.Counter32 },
  { number: 13, name: 'ifInDiscards', type: snmp.ObjectType.Counter32 },
  { number: 14, name: 'ifInErrors', type: snmp.ObjectType.Counter32 },
  { number: 16, name: 'ifOutOctets', type: snmp.ObjectType.Counter32 },
  { number: 20, name: 'ifOutErrors', type: snmp.ObjectType.Counter32 },
] as const;

/** ifXTable columns served, in row-array order (the row array starts with the foreign ifIndex). */
const IFX_COLUMNS = [
  { number: 1, name: 'ifName', type: snmp.ObjectType.OctetString },
  { number: 6, name: 'ifHCInOctets', type: snmp.ObjectType.Counter64 },
  { number: 10, name: 'ifHCOutOctets', type: snmp.ObjectType.Counter64 },
  { number: 15, name: 'ifHighSpeed', type: snmp.ObjectType.Gauge32 },
  { number: 18, name: 'ifAlias', type: snmp.ObjectType.OctetString },
  { number: 19, name: 'ifCounterDiscontinuityTime', type: snmp.ObjectType.TimeTicks },
] as const;

const U32 = 2n ** 32n;
const U64 = 2n ** 64n;
const MAX_U32 = 4_294_967_295;

/**
 * Counter64 in net-snmp: the agent writes the value as the raw content octets of a Buffer, and its MIB accepts
 * only 8-byte Buffers (a JS number would lose everything above 2^53). So values travel as 8 big-endian bytes;
 * net-snmp's session hands the same bytes back as a Buffer (not a bigint, whatever @types/net-snmp says).
 */
function counter64(value: bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(((value % U64) + U64) % U64);
  return b;
}
const counter32 = (value: bigint | number): number => Number(((BigInt(value) % U32) + U32) % U32);
/** IF-MIB::ifSpeed: bit/s, saturating at 2^32−1 (RFC 2863: use ifHighSpeed above that). */
const ifSpeed = (highSpeedMbps: number): number => Math.min(highSpeedMbps * 1_000_000, MAX_U32);

/** The slice of net-snmp's (untyped) Mib and Agent used here. */
interface Mib {
  registerProvider(provider: object): void;
  setScalarValue(name: string, value: unknown): void;
  addTableRow(table: string, row: unknown[]): void;
  setTableSingleCell(table: string, column: number, rowIndex: number[], value: unknown): void;
}
interface Agent {
  getAuthorizer(): { addCommunity(community: string): void };
  close(callback?: () => void): void;
}
interface MibRequest {
  instanceNode: { value: unknown };
  done(): void;
}

interface IfaceState extends Required<SimIface> {}

export class SnmpSim {
  /** The UDP port on 127.0.0.1, known once `start()` resolved. */
  port = 0;
  /** The management TCP port (`managementTcp`), known once `start()` resolved; 0 without one. */
  tcpPort = 0;
  private tcp: Server | undefined;
  private readonly community: string;
  private readonly ifaces = new Map<number, IfaceState>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private agent: Agent | undefined;
  private mib: Mib | undefined;
  private bootedAtMs = performance.now();
  private uptimeOffsetTicks = 0;
  private responses = 0;

  constructor(private readonly opts: SimOptions) {
    this.community = opts.community ?? 'public';
    this.port = opts.port ?? 0;
    for (const i of opts.ifaces) {
      if (this.ifaces.has(i.index)) throw new Error(`SnmpSim: duplicate ifIndex ${i.index}`);
      this.ifaces.set(i.index, {
        alias: '',
        descr: i.name,
        inErrors: 0,
        outErrors: 0,
        inDiscards: 0,
        discontinuityTicks: 0,
        ...i,
      });
    }
  }

  /** Responses sent since `start()` (one per request answered). */
  get requests(): number {
    return this.responses;
  }

  /** SNMPv2-MIB::sysUpTime.0 right now, in 1/100 s (TimeTicks wrap at 2^32, RFC 2578 §7.1.8). */
  uptimeTicks(): number {
    const ticks = this.uptimeOffsetTicks + Math.floor((performance.now() - this.bootedAtMs) / 10);
    return ticks % 2 ** 32;
  }

  /** Binds a free UDP port on 127.0.0.1 (the previous one on a restart) and answers from then on. */
  async start(): Promise<this> {
    if (this.agent) throw new Error('SnmpSim already started');
    const mib = this.buildMib();
    let socket: Socket | undefined;
    const agent = snmp.createAgent(
      {
        address: this.opts.address ?? '127.0.0.1',
        port: 161, // not used: the socket below binds an ephemeral port
        disableAuthorization: false,
        dgramModule: { createSocket: (type: SocketType) => (socket = this.createSocket(type)) },
      },
      (err: unknown) => {
        // Called with each response sent (and with errors: a wrong community, a malformed packet); a real
        // device drops those silently too.
        if (!err) this.responses++;
      },
      mib,
    ) as Agent;
    agent.getAuthorizer().addCommunity(this.community);
    const bound = socket!;
    await new Promise<void>((resolve, reject) => {
      bound.once('error', reject);
      bound.once('listening', () => {
        bound.off('error', reject);
        resolve();
      });
    }).catch((e: unknown) => {
      agent.close();
      throw e;
    });
    this.agent = agent;
    this.mib = mib;
    this.port = bound.address().port;
    if (this.opts.managementTcp)
      await this.listenTcp().catch(async (e: unknown) => {
        await this.stop();
        throw e;
      });
    return this;
  }

  private async listenTcp(): Promise<void> {
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.tcpPort, this.opts.address ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.tcp = server;
    this.tcpPort = (server.address() as { port: number }).port;
  }

  /** Closes the socket and drops responses still waiting out `delayMs`. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const agent = this.agent;
    this.agent = undefined;
    this.mib = undefined;
    if (agent) await new Promise<void>((resolve) => agent.close(() => resolve()));
    const tcp = this.tcp;
    this.tcp = undefined;
    if (tcp) await new Promise<void>((resolve) => tcp.close(() => resolve()));
  }

  /**
   * A device restart: sysUpTime starts again from 0 and, as on real hardware, every interface counter restarts
   * from 0 (RFC 2863 §3.1.6: counters are discontinuous at re-initialisation, seen through sysUpTime), and
   * ifCounterDiscontinuityTime goes back to 0 ("no discontinuity since the last re-initialisation").
   */
  reboot(): void {
    this.bootedAtMs = performance.now();
    this.uptimeOffsetTicks = 0;
    for (const i of this.ifaces.values()) {
      i.inOctets = 0n;
      i.outOctets = 0n;
      i.inErrors = 0;
      i.outErrors = 0;
      i.inDiscards = 0;
      i.discontinuityTicks = 0;
      this.publish(i);
    }
  }

  /** Sets sysUpTime.0 to `ticks` now; it keeps counting (and wraps at 2^32) from there. */
  setUptimeTicks(ticks: number): void {
    if (!Number.isInteger(ticks) || ticks < 0) throw new RangeError(`SnmpSim: bad uptime ${ticks}`);
    this.bootedAtMs = performance.now();
    this.uptimeOffsetTicks = ticks % 2 ** 32;
  }

  /** Sets the 64-bit counters (taken mod 2^64); ifInOctets/ifOutOctets show them mod 2^32. */
  setCounters(index: number, inOctets: bigint, outOctets: bigint): void {
    const i = this.iface(index);
    i.inOctets = ((inOctets % U64) + U64) % U64;
    i.outOctets = ((outOctets % U64) + U64) % U64;
    this.publish(i);
  }

  /** Adds traffic; the counters wrap like real ones (Counter64 at 2^64, Counter32 at 2^32). */
  advance(index: number, inBytes: bigint, outBytes: bigint): void {
    const i = this.iface(index);
    this.setCounters(index, i.inOctets + inBytes, i.outOctets + outBytes);
  }

  setOperStatus(index: number, status: number): void {
    const i = this.iface(index);
    i.operStatus = status as IfaceState['operStatus'];
    this.mib?.setTableSingleCell('ifTable', 8, [index], status);
  }

  private iface(index: number): IfaceState {
    const i = this.ifaces.get(index);
    if (!i) throw new Error(`SnmpSim: no interface with ifIndex ${index}`);
    return i;
  }

  /** Writes an interface's counters into the MIB (a no-op before `start()`: the MIB is built from state). */
  private publish(i: IfaceState): void {
    const mib = this.mib;
    if (!mib) return;
    const row = [i.index];
    mib.setTableSingleCell('ifTable', 10, row, counter32(i.inOctets));
    mib.setTableSingleCell('ifTable', 13, row, counter32(i.inDiscards));
    mib.setTableSingleCell('ifTable', 14, row, counter32(i.inErrors));
    mib.setTableSingleCell('ifTable', 16, row, counter32(i.outOctets));
    mib.setTableSingleCell('ifTable', 20, row, counter32(i.outErrors));
    if (this.opts.noIfXTable) return;
    mib.setTableSingleCell('ifXTable', 6, row, counter64(i.inOctets));
    mib.setTableSingleCell('ifXTable', 10, row, counter64(i.outOctets));
    mib.setTableSingleCell('ifXTable', 19, row, i.discontinuityTicks);
  }

  /**
   * The socket net-snmp's listener uses (its `dgramModule` option). Two adjustments: net-snmp binds
   * `options.port || 161`, so it cannot ask for port 0 — this socket binds an ephemeral port whatever it is
   * asked; and with `delayMs` every response is sent that much later (createAgent has no hook for that, and a
   * relay socket in front would double the sockets of a 100-agent bench).
   */
  private createSocket(type: SocketType): Socket {
    const socket = createSocket(type);
    const bind = socket.bind.bind(socket) as (port: number, address?: string) => Socket;
    // An ephemeral port the first time; the same port again after stop() → start(), like a device that restarts.
    socket.bind = ((_port: number, address?: string) => bind(this.port || 0, address)) as typeof socket.bind;
    const delayMs = this.opts.delayMs ?? 0;
    if (delayMs > 0) {
      const send = socket.send.bind(socket) as (...args: unknown[]) => void;
      socket.send = ((...args: unknown[]) => {
        const t = setTimeout(() => {
          this.timers.delete(t);
          send(...args);
        }, delayMs);
        this.timers.add(t);
      }) as typeof socket.send;
    }
    return socket;
  }

  private buildMib(): Mib {
    const mib = snmp.createMib() as Mib;
    const readOnly = snmp.MaxAccess['read-only'];
    const scalar = (name: string, oid: string, scalarType: snmp.ObjectType, extra: object = {}) =>
      mib.registerProvider({
        name,
        type: snmp.MibProviderType.Scalar,
        oid,
        scalarType,
        maxAccess: readOnly,
        ...extra,
      });
    scalar('sysDescr', SYS_DESCR, snmp.ObjectType.OctetString);
    scalar('sysName', SYS_NAME, snmp.ObjectType.OctetString);
    // sysUpTime must be current at request time: the provider's handler runs for every GET/GETNEXT/GETBULK
    // varbind that lands on sysUpTime.0, before the value is read into the response.
    scalar('sysUpTime', SYS_UPTIME, snmp.ObjectType.TimeTicks, {
      handler: (req: MibRequest) => {
        req.instanceNode.value = this.uptimeTicks();
        req.done();
      },
    });
    mib.setScalarValue('sysDescr', this.opts.sysDescr ?? 'cfm SnmpSim (net-snmp agent)');
    mib.setScalarValue('sysName', this.opts.sysName ?? 'snmp-sim');
    mib.setScalarValue('sysUpTime', this.uptimeTicks());

    mib.registerProvider({
      name: 'ifTable',
      type: snmp.MibProviderType.Table,
      oid: IF_ENTRY,
      maxAccess: snmp.MaxAccess['not-accessible'],
      tableColumns: IF_COLUMNS.map((c) => ({ ...c, maxAccess: readOnly })),
      tableIndex: [{ columnName: 'ifIndex' }],
    });
    if (!this.opts.noIfXTable) {
      mib.registerProvider({
        name: 'ifXTable',
        type: snmp.MibProviderType.Table,
        oid: IFX_ENTRY,
        maxAccess: snmp.MaxAccess['not-accessible'],
        tableColumns: IFX_COLUMNS.map((c) => ({ ...c, maxAccess: readOnly })),
        tableAugments: 'ifTable', // IF-MIB: ifXEntry AUGMENTS { ifEntry }
      });
    }
    const rows = [...this.ifaces.values()].sort((a, b) => a.index - b.index);
    for (const i of rows) {
      mib.addTableRow('ifTable', [
        i.index,
        i.descr,
        ifSpeed(i.highSpeedMbps),
        i.operStatus,
        counter32(i.inOctets),
        counter32(i.inDiscards),
        counter32(i.inErrors),
        counter32(i.outOctets),
        counter32(i.outErrors),
      ]);
      if (this.opts.noIfXTable) continue;
      mib.addTableRow('ifXTable', [
        i.index,
        i.name,
        counter64(i.inOctets),
        counter64(i.outOctets),
        i.highSpeedMbps,
        i.alias,
        i.discontinuityTicks,
      ]);
    }
    return mib;
  }
}
