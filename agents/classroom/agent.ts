import type { Logger } from 'pino';
import { z } from 'zod';
import type { Service } from '../../common/lifecycle.js';
import { MqttSession, mqttConfigSchema, type OutgoingMessage } from '../../common/mqtt.js';
import { secret } from '../../common/redact.js';
import { idSchema, regionPathSchema } from '../../contracts/ids.js';
import {
  type Activity,
  type DeviceEvent,
  type DeviceStatus,
  type DisplayHealth,
  deviceKindSchema,
  type Telemetry,
  type TopicPayloads,
} from '../../contracts/messages.js';
import { buildTopic, type Channel } from '../../contracts/topics.js';
import {
  NO_PUBLISHER_STATS,
  type PublisherStats,
  ReliablePublisher,
  spoolConfigSchema,
} from '../publisher.js';
import type { ActivitySource } from '../sources/activity/activity.js';
import { CommandActivity } from '../sources/activity/command.js';
import { activityConfigSchema, windowsHelperConfigSchema } from '../sources/activity/config.js';
import { SimulatedActivity } from '../sources/activity/simulated.js';
import { teachingSiteMatcher } from '../sources/activity/sites.js';
import {
  defaultPowershell,
  type HelperResponse,
  helperNics,
  helperProcess,
  WindowsHelper,
  type WindowsHelperStats,
} from '../sources/activity/windows.js';
import { localActivity, WindowsSessionActivity } from '../sources/activity/windows-session.js';
import { X11Activity } from '../sources/activity/x11.js';
import { readCommand } from '../sources/command.js';
import { HostSource } from '../sources/host.js';
import { readPjlink } from '../sources/pjlink.js';
import { SimulatedDisplay } from '../sources/simulated.js';

export const AGENT_NAME = 'cfm-agent';
/** 0.2: telemetry v2 with `activity`, no `inUse` (#16). */
export const AGENT_VERSION = '0.2.0';

const displayConfigSchema = z
  .discriminatedUnion('source', [
    z.strictObject({ source: z.literal('none') }),
    z.strictObject({
      source: z.literal('pjlink'),
      host: z.string().min(1).describe('Projector / panel address.'),
      port: z.number().int().min(1).max(65_535).default(4352).describe('PJLink TCP port.'),
      password: secret(z.string()).optional().describe('PJLink password.'),
      timeoutMs: z.number().int().min(100).default(3_000).describe('Whole read (connect + four queries).'),
    }),
    z.strictObject({
      source: z.literal('command'),
      command: z.string().min(1).describe('Vendor tool printing display health as JSON.'),
      args: z.array(z.string()).default([]).describe('Arguments; no shell is involved.'),
      timeoutMs: z.number().int().min(100).default(5_000).describe('The command is killed after this.'),
    }),
    z.strictObject({
      source: z.literal('simulated'),
      idle: z.boolean().default(false).describe('Never switched on: bought but unused.'),
      leftOn: z
        .boolean()
        .default(false)
        .describe('On all of the teaching hours, used or not: switched on in the morning and left on.'),
      faulty: z.boolean().default(false).describe('Reports a lamp error.'),
      useShare: z
        .number()
        .min(0)
        .max(1)
        .default(0.7)
        .describe('Share of teaching periods it is switched on for.'),
      unattendedShare: z
        .number()
        .min(0)
        .max(1)
        .default(0)
        .describe('Share of the periods it is switched on for with nobody at the board (on but unused).'),
    }),
  ])
  .default({ source: 'none' })
  .describe('Where display health comes from: `none`, `pjlink`, `command` or `simulated`.');

export const agentConfigSchema = z
  .strictObject({
    school: idSchema.describe('School id (学校标识码); a topic level.'),
    device: idSchema.describe('This device id, unique within the school; a topic level.'),
    classroom: idSchema.optional().describe('Classroom id.'),
    region: regionPathSchema.optional().describe('Region path, e.g. `330000/330100/330106`.'),
    kind: deviceKindSchema.default('teacher_pc').describe('What this agent reports as.'),
    intervalS: z
      .number()
      .int()
      .min(1)
      .max(3_600)
      .default(10)
      .describe('Seconds between readings (the heartbeat).'),
    mqtt: mqttConfigSchema,
    spool: spoolConfigSchema.prefault({ dir: 'var/agent-spool' }),
    replayRatePerSec: z
      .number()
      .positive()
      .default(10)
      .describe('Queued readings sent per second after a reconnect (keep below the broker limit).'),
    host: z
      .strictObject({
        enabled: z.boolean().default(true).describe('Report host uptime, CPU, memory and NIC counters.'),
        nics: z.array(z.string()).default([]).describe('NICs to report; empty = all but loopback.'),
      })
      .prefault({}),
    display: displayConfigSchema,
    activity: activityConfigSchema,
    windowsHelper: windowsHelperConfigSchema,
  })
  .superRefine((c, ctx) => {
    if (c.windowsHelper.sessionPipe !== undefined && c.activity.source !== 'windows') {
      ctx.addIssue({
        code: 'custom',
        path: ['windowsHelper', 'sessionPipe'],
        message: 'the session helper is an activity source: it needs `activity.source: windows`',
      });
    }
  })
  .describe('The classroom agent.');
export type AgentConfig = z.infer<typeof agentConfigSchema>;

export interface AgentStats extends PublisherStats {
  readings: number;
  displayErrors: number;
  /** Readings sent without `activity` because the activity source failed. */
  activityErrors: number;
  /** The Windows helper's own counters, when it runs. */
  windowsHelper?: WindowsHelperStats;
  /** The connection to the session helper's pipe (`starts`, `exits`: connections), with `sessionPipe`. */
  sessionHelper?: WindowsHelperStats;
}

/**
 * The classroom agent: every `intervalS` it reads host and display health and publishes a telemetry message;
 * display faults and reachability changes become events. Everything goes through one ordered path:
 *
 *   reading ─► ReliablePublisher (../publisher.ts): publish QoS 1, or spool to disk and replay in order
 *
 * so a broker outage, a broker restart or an agent crash loses nothing.
 */
export class ClassroomAgent implements Service {
  readonly name = 'agent';
  private session: MqttSession | undefined;
  private timer: NodeJS.Timeout | undefined;
  private publisher: ReliablePublisher | undefined;
  private readonly hostSource: HostSource;
  private readonly simulated: SimulatedDisplay | undefined;
  private readonly activitySource: ActivitySource | undefined;
  private readonly helper: WindowsHelper | undefined;
  private readonly sessionActivity: WindowsSessionActivity | undefined;
  private readonly matchSite: (title: string | undefined) => string | undefined;
  /** Problems already logged (bounded): an activity source failing every reading logs each once. */
  private readonly logged = new Set<string>();
  private seq = 0;
  private lastErrors: Record<string, string> = {};
  private displayReachable = true;
  private ticking: Promise<void> = Promise.resolve();
  private readonly counts = { readings: 0, displayErrors: 0, activityErrors: 0 };

  constructor(
    readonly config: AgentConfig,
    private readonly deps: {
      log: Logger;
      now?: () => number;
      /** The system the agent runs on (tests): on `win32` the Windows helper reads the NIC counters. */
      platform?: NodeJS.Platform;
    },
  ) {
    this.hostSource = new HostSource({ nics: config.host.nics });
    const seed = `${config.school}/${config.device}`;
    const d = config.display;
    const classroom =
      d.source === 'simulated'
        ? { seed, idle: d.idle, leftOn: d.leftOn, useShare: d.useShare, unattendedShare: d.unattendedShare }
        : { seed };
    this.simulated =
      d.source === 'simulated' ? new SimulatedDisplay({ ...classroom, faulty: d.faulty }) : undefined;
    const a = config.activity;
    this.matchSite = teachingSiteMatcher(a.source === 'none' ? [] : a.teachingSites);
    const log = deps.log;
    switch (a.source) {
      case 'x11':
        this.activitySource = new X11Activity({
          display: a.display ?? process.env.DISPLAY ?? ':0',
          xauthority: a.xauthority,
          timeoutMs: a.timeoutMs,
          match: this.matchSite,
          log,
        });
        break;
      case 'command':
        this.activitySource = new CommandActivity({
          command: a.command,
          args: a.args,
          timeoutMs: a.timeoutMs,
          match: this.matchSite,
        });
        break;
      case 'simulated':
        this.activitySource = new SimulatedActivity({ ...classroom, teachingSite: a.teachingSites[0]?.name });
        break;
    }
    const platform = deps.platform ?? process.platform;
    if (a.source === 'windows' || (platform === 'win32' && config.host.enabled)) {
      const w = config.windowsHelper;
      this.helper = new WindowsHelper({
        transport: helperProcess({ command: w.command ?? defaultPowershell() }),
        timeoutMs: w.timeoutMs,
        startTimeoutMs: w.startTimeoutMs,
        restartMaxMs: w.restartMaxMs,
        log,
      });
      if (a.source === 'windows' && w.sessionPipe !== undefined) {
        this.sessionActivity = new WindowsSessionActivity({
          pipe: w.sessionPipe,
          timeoutMs: w.timeoutMs,
          restartMaxMs: w.restartMaxMs,
          match: this.matchSite,
          log,
        });
      }
    }
  }

  stats(): AgentStats {
    const p = this.publisher?.stats() ?? NO_PUBLISHER_STATS;
    const s: AgentStats = { ...p, ...this.counts };
    if (this.helper) s.windowsHelper = this.helper.stats();
    if (this.sessionActivity) s.sessionHelper = this.sessionActivity.stats();
    return s;
  }

  /** The Windows helper, when this agent runs one (tests, diagnostics). */
  get windowsHelper(): WindowsHelper | undefined {
    return this.helper;
  }

  /** The connection to the session helper, with `windowsHelper.sessionPipe` (tests, diagnostics). */
  get sessionHelper(): WindowsHelper | undefined {
    return this.sessionActivity?.connection;
  }

  private warnOnce(key: string, obj: Record<string, unknown>, msg: string): void {
    if (this.logged.has(key)) return;
    if (this.logged.size < 64) this.logged.add(key);
    this.deps.log.warn(obj, msg);
  }

  get connected(): boolean {
    return this.session?.connected ?? false;
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  private topic(channel: Channel): string {
    return buildTopic({ school: this.config.school, device: this.config.device, channel });
  }

  private message<C extends Channel>(channel: C, payload: TopicPayloads[C]): OutgoingMessage {
    return {
      topic: this.topic(channel),
      payload: JSON.stringify(payload),
      qos: 1,
      retain: channel === 'status',
    };
  }

  private status(state: 'online' | 'offline', reason: DeviceStatus['reason']): OutgoingMessage {
    const c = this.config;
    const s: DeviceStatus = {
      v: 1,
      ts: this.now(),
      state,
      reason,
      kind: c.kind,
      agent: { name: AGENT_NAME, version: AGENT_VERSION },
      heartbeatS: c.intervalS,
    };
    if (c.classroom) s.classroom = c.classroom;
    if (c.region) s.region = c.region;
    return this.message('status', s);
  }

  async start(): Promise<void> {
    const log = this.deps.log;
    const session = new MqttSession(this.config.mqtt, {
      log,
      clientId:
        this.config.mqtt.clientId ??
        this.config.mqtt.username ??
        `${this.config.school}.${this.config.device}`,
      will: this.status('offline', 'will'),
      birth: () => this.status('online', 'birth'),
      numberCache: false, // 6.6 MB of heap for one message every few seconds (bench:agent)
    });
    this.session = session;
    const publisher = new ReliablePublisher(session, {
      log,
      spool: this.config.spool,
      replayRatePerSec: this.config.replayRatePerSec,
    });
    await publisher.open();
    this.publisher = publisher;
    await this.activitySource?.start?.();
    this.helper?.start();
    session.start();
    const tick = () => {
      this.ticking = this.ticking
        .then(() => this.tick())
        .catch((err: unknown) => log.error({ err }, 'reading failed'));
    };
    tick();
    this.timer = setInterval(tick, this.config.intervalS * 1000);
  }

  private async readDisplay(): Promise<DisplayHealth | undefined> {
    const d = this.config.display;
    switch (d.source) {
      case 'none':
        return undefined;
      case 'simulated':
        return this.simulated!.read(new Date(this.now()));
      case 'pjlink':
        return readPjlink({ host: d.host, port: d.port, password: d.password, timeoutMs: d.timeoutMs });
      case 'command':
        return readCommand({ command: d.command, args: d.args, timeoutMs: d.timeoutMs });
    }
  }

  private event(
    type: DeviceEvent['type'],
    severity: DeviceEvent['severity'],
    subject: string,
    message: string,
  ) {
    return this.message('event', {
      v: 1,
      ts: this.now(),
      type,
      severity,
      kind: this.config.kind,
      subject,
      message,
    });
  }

  /**
   * The activity evidence of one reading, and the NIC counters when the Windows helper read them (an empty map
   * when it could not: no counters rather than /proc's on a system without one). A failed source gives no
   * activity — the collector then judges the reading by power, as it says (`use_basis`).
   */
  private async readActivity(
    ts: number,
  ): Promise<{ activity?: Activity; nics?: Map<string, { rx: bigint; tx: bigint }> }> {
    const source = this.config.activity.source;
    const out: { activity?: Activity; nics?: Map<string, { rx: bigint; tx: bigint }> } = {};
    if (this.helper) {
      let sample: HelperResponse | undefined;
      let failed: Error | undefined;
      if (this.helper.ready) {
        try {
          sample = await this.helper.read();
        } catch (err) {
          failed = err as Error;
          this.warnOnce(
            `helper:${failed.message.slice(0, 100)}`,
            { err: failed.message },
            'windows helper reading failed',
          );
        }
      } else {
        failed = new Error('windows helper is not ready'); // starting, or restarting after it died (it logs why)
      }
      out.nics = sample ? helperNics(sample) : new Map();
      if (source === 'windows') {
        try {
          out.activity = this.sessionActivity
            ? await this.sessionActivity.read(sample)
            : localActivity(sample, failed, this.matchSite);
        } catch (err) {
          this.counts.activityErrors++;
          // The agent's own helper's failure is logged above (or by the helper): not twice.
          if (err !== failed) {
            const msg = (err as Error).message;
            this.warnOnce(`windows:${msg.slice(0, 100)}`, { err: msg }, `no windows activity: ${msg}`);
          }
        }
      }
      // The helper also runs for NIC counters alone: another configured source still gives the activity.
      if (source === 'windows') return out;
    }
    if (this.activitySource) {
      try {
        out.activity = await this.activitySource.read(ts);
      } catch (err) {
        this.counts.activityErrors++;
        const msg = (err as Error).message;
        this.warnOnce(`activity:${msg.slice(0, 100)}`, { err: msg }, 'activity read failed');
      }
    }
    return out;
  }

  /** One reading: telemetry plus any events it implies, all through the ordered send path. */
  async tick(): Promise<void> {
    const c = this.config;
    const out: OutgoingMessage[] = [];
    let display: DisplayHealth | undefined;
    try {
      display = await this.readDisplay();
      if (!this.displayReachable) {
        this.displayReachable = true;
        out.push(this.event('recovered', 'info', 'display', 'display answers again'));
      }
    } catch (err) {
      this.counts.displayErrors++;
      this.deps.log.warn({ err: (err as Error).message }, 'display read failed');
      // A display that does not answer is not known to be on: said so, rather than left out — a reading
      // without a display would be judged by the computer's screen alone (docs/usage.md, "The rule").
      const source = c.display.source;
      if (source !== 'none') display = { source, power: 'unknown' };
      if (this.displayReachable) {
        this.displayReachable = false;
        out.push(this.event('unreachable', 'warning', 'display', (err as Error).message.slice(0, 500)));
      }
    }
    for (const [part, level] of Object.entries(display?.errors ?? {})) {
      const before = this.lastErrors[part] ?? 'ok';
      if (level === before) continue;
      out.push(
        level === 'ok'
          ? this.event('fault_cleared', 'info', part, `${part} ok again`)
          : this.event('fault', level === 'error' ? 'critical' : 'warning', part, `${part} ${level}`),
      );
      this.lastErrors[part] = level;
    }
    // v2: the evidence, not a judgement — no `inUse`; the collector judges use (docs/usage.md).
    const t: Telemetry = { v: 2, ts: this.now(), seq: this.seq++, kind: c.kind };
    if (c.classroom) t.classroom = c.classroom;
    const { activity, nics } = await this.readActivity(t.ts);
    if (c.host.enabled) t.host = await this.hostSource.read(t.ts, nics);
    if (display) t.display = display;
    if (activity) t.activity = activity;
    // What the spool dropped or lost so far this run: the reading that follows the loss reports it.
    const undeliverable = this.publisher?.undeliverable ?? 0;
    if (undeliverable > 0) t.spoolDropped = undeliverable;
    this.counts.readings++;
    out.unshift(this.message('telemetry', t));
    for (const m of out) await this.send(m);
  }

  private send(m: OutgoingMessage): Promise<void> {
    return this.publisher!.send(m);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.ticking;
    await this.sessionActivity?.stop();
    await this.helper?.stop();
    await this.activitySource?.stop?.();
    await this.publisher?.close(); // what is still queued stays on disk for the next run; stats stay readable
    // An explicit offline, so the collector tells a switched-off PC from a crashed one (MQTT-3.1.2-10: a clean
    // DISCONNECT discards the will).
    await this.session?.stop(this.status('offline', 'shutdown'));
    this.session = undefined;
  }
}
