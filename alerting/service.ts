import { copyFileSync, existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type Calendars, localDate, localMidnightMs, WEEKDAYS, weekdayOf } from '../common/calendar.js';
import { JsonFileError, readJsonFileAs, writeFileAtomic } from '../common/json-file.js';
import { carriesUplink, type LiveMessage, type LiveState } from '../common/live.js';
import { entityKey } from '../common/registry/key.js';
import type { RegistryStore } from '../common/registry/store.js';
import type { Storage } from '../common/storage/index.js';
import { idSchema, regionPathSchema, regionWithin } from '../contracts/ids.js';
import { type Alert, AlertEngine, type Notification } from './engine.js';
import { type Channel, channelSchema, Deliverer, type Names, render } from './notify.js';
import { RULE_NAMES, type Rule, type RuleName, resolveRules, rulesConfigSchema } from './rules.js';
import { type Silence, type StateFile, silenceSchema, stateFileSchema } from './state.js';

export { type Silence, silenceSchema } from './state.js';

/** Deadline ticks are at least this far apart (the precision of the alert timers). */
const MIN_TICK_MS = 10;

/** Display fault subjects: the agent's PJLink error parts and the telemetry checks. */
const FAULT_SUBJECTS = new Set([
  'fan',
  'lamp',
  'temperature',
  'cover',
  'filter',
  'other',
  'display',
  'touch',
  'lamp_hours',
  'temperature_c',
]);

/** HH:MM-HH:MM (local time) on some weekdays: a recurring maintenance window; `from` > `to` spans midnight. */
const maintenanceSchema = z.strictObject({
  name: z.string().min(1).max(64),
  regions: z.array(regionPathSchema).optional(),
  schools: z.array(idSchema).optional(),
  rules: z.array(z.enum(RULE_NAMES)).optional(),
  weekdays: z.array(z.enum(WEEKDAYS)).min(1),
  from: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, { message: 'must be HH:MM' }),
  to: z.string().regex(/^([01]\d|2[0-4]):[0-5]\d$/, { message: 'must be HH:MM' }),
});

export const alertsConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    stateFile: z
      .string()
      .default('var/alerts-state.json')
      .describe(
        'Active alerts, silences, history (survives restarts). Each write keeps the previous file as `<stateFile>.bak`; a malformed state file at start is replaced by that last good copy with an error logged, and when both are malformed the API refuses to start, naming both files and the first bad field of each.',
      ),
    groupWaitS: z
      .number()
      .int()
      .min(0)
      .max(600)
      .default(30)
      .describe('Hold a school’s notifications this long, then send one message.'),
    tickMs: z
      .number()
      .int()
      .min(50)
      .max(10_000)
      .default(1_000)
      .describe(
        'Longest sleep between evaluations (calendar and silence boundaries, data gaps); timers wake it on time.',
      ),
    flap: z
      .strictObject({
        changes: z.number().int().min(2).default(6),
        windowS: z.number().int().min(60).default(600),
      })
      .prefault({})
      .describe(
        'A key changing this often within the window is flapping: it resolves only after a quiet window.',
      ),
    rules: rulesConfigSchema,
    channels: z
      .array(channelSchema)
      .default([])
      .describe('Where notifications go (secrets: use CFM_ALERTS__… overrides).'),
    linkBaseUrl: z.string().url().optional().describe('Public URL of the API, for the link in each message.'),
    maintenance: z.array(maintenanceSchema).default([]).describe('Weekly windows without notifications.'),
    historyMax: z.number().int().min(10).max(100_000).default(5_000),
    delivery: z
      .strictObject({
        maxAttempts: z.number().int().min(1).max(20).default(8),
        minDelayMs: z.number().int().min(10).default(1_000),
        maxDelayMs: z.number().int().min(100).default(300_000),
      })
      .prefault({}),
  })
  .prefault({})
  .describe('Alerting: rules, channels, maintenance windows (design: api/alerts/README.md).');
export type AlertsConfig = z.infer<typeof alertsConfigSchema>;

/**
 * The alerting service in the API process: turns live MQTT messages into engine signals, ticks the engine,
 * renders and delivers its notifications, and keeps the state file.
 */
export class AlertService {
  readonly engine: AlertEngine;
  /** The rules with the config's overrides applied (resolved once, not per message). */
  private readonly rules: Record<RuleName, Rule>;
  readonly deliverer: Deliverer;
  silences: Silence[] = [];
  /** Ticks run (tests wait for some to pass when asserting that nothing happens). */
  ticks = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When the timer is due (Infinity: none set). */
  private timerAtMs = Number.POSITIVE_INFINITY;
  private stopped = true;
  private gapsAtMs = 0;
  private savedVersion = -1;
  private dirty = false;
  /**
   * Per school without a registered uplink device: the registered router/switch of that school whose readings
   * mark the uplink interface (`carriesUplink`).
   */
  private readonly uplinkDevice = new Map<string, string>();
  /** Per `entityKey(school, device)`: the newest telemetry timestamp seen (replays are older). */
  private readonly newestTs = new Map<string, number>();
  /** Per school: the uplink is unreachable over SNMP, and/or its interface is not up. */
  private readonly uplinkFlags = new Map<string, { snmp: boolean; oper: boolean }>();
  /** Per `entityKey(school, device)`: last telemetry (ms) and its promised heartbeat. */
  private readonly lastSeen = new Map<
    string,
    { school: string; device: string; atMs: number; heartbeatS: number }
  >();
  private readonly onMessage = (m: LiveMessage) => {
    this.signal(m);
    // A signal may have set an earlier deadline than the one the timer sleeps towards.
    if (this.engine.nextWakeMs < this.timerAtMs) this.schedule();
  };

  constructor(
    readonly config: AlertsConfig,
    private readonly deps: {
      log: Logger;
      registry: RegistryStore;
      calendars: () => Calendars;
      live: LiveState;
      now?: () => number;
      /** Where notifications are also written as `alert` points (the API's storage); absent: nowhere. */
      storage?: Pick<Storage, 'write'>;
    },
  ) {
    const rules = resolveRules(config.rules);
    this.rules = rules;
    this.engine = new AlertEngine({
      rules,
      groupWaitS: config.groupWaitS,
      flap: config.flap,
      teaching: (school, ms) => this.teaching(school, ms),
      silenced: (a, ms) => this.silenced(a, ms),
      historyMax: config.historyMax,
    });
    this.deliverer = new Deliverer({
      log: deps.log,
      ...config.delivery,
      keep: 2_000,
      onChange: () => {
        this.dirty = true;
      },
    });
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  start(): void {
    this.load();
    this.stopped = false;
    this.deps.live.on('message', this.onMessage);
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    this.deps.live.off('message', this.onMessage);
    this.deliverer.stop();
    this.save(true);
  }

  /** One step: engine timers, deliveries, the state file. Public for tests with a fake clock. */
  tick(now = this.now()): void {
    this.ticks++;
    if (now < this.gapsAtMs || now - this.gapsAtMs >= this.config.tickMs) {
      this.gapsAtMs = now;
      this.gaps(now);
    }
    for (const n of this.engine.tick(now)) this.deliver(n);
    this.save(false);
  }

  /**
   * Sleeps until the engine's next deadline (a grace period ending, a group window closing), so alerts fire on
   * time rather than on the next tick; at most `tickMs`, for calendar and silence boundaries. Ticks are at
   * least `MIN_TICK_MS` apart, so a burst of deadlines costs a few evaluations, not one each.
   */
  private schedule(): void {
    if (this.stopped) return;
    const now = this.now();
    const at = Math.max(Math.min(this.engine.nextWakeMs, now + this.config.tickMs), now + MIN_TICK_MS);
    if (this.timer !== undefined && this.timerAtMs <= at) return;
    clearTimeout(this.timer);
    this.timerAtMs = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAtMs = Number.POSITIVE_INFINITY;
      try {
        this.tick();
      } finally {
        this.schedule();
      }
    }, at - now);
  }

  private teaching(school: string, ms: number): boolean {
    const reg = this.deps.registry.index;
    const s = reg.schools.get(school);
    const cal = s ? this.deps.calendars().forSchool(school, reg.regionPath(s.region)) : undefined;
    return cal?.isTeachingTime(ms) ?? false;
  }

  private silenced(a: Alert, ms: number): boolean {
    const path = this.deps.registry.index.schoolPath(a.school);
    const match = (m: {
      region?: string | undefined;
      school?: string | undefined;
      device?: string | undefined;
      rule?: string | undefined;
    }) =>
      (!m.region || (path !== undefined && regionWithin(path, m.region))) &&
      (!m.school || m.school === a.school) &&
      (!m.device || m.device === a.device) &&
      (!m.rule || m.rule === a.rule);
    if (this.silences.some((s) => s.startsAtMs <= ms && ms < s.endsAtMs && match(s))) return true;
    const date = localDate(ms);
    const minute = Math.floor((ms - localMidnightMs(date)) / 60_000);
    const hm = (t: string) => +t.slice(0, 2) * 60 + +t.slice(3, 5);
    return this.config.maintenance.some(
      (w) =>
        w.weekdays.includes(weekdayOf(date)) &&
        (hm(w.from) < hm(w.to)
          ? hm(w.from) <= minute && minute < hm(w.to)
          : minute >= hm(w.from) || minute < hm(w.to)) && // 22:00-06:00 spans midnight
        (!w.regions || w.regions.some((r) => path !== undefined && regionWithin(path, r))) &&
        (!w.schools || w.schools.includes(a.school)) &&
        (!w.rules || w.rules.includes(a.rule)),
    );
  }

  // ---- signals from live messages ------------------------------------------------------------------------

  private cond(
    rule: RuleName,
    school: string,
    device: string | undefined,
    subject: string | undefined,
    active: boolean,
    atMs: number,
    message?: string,
  ): void {
    this.engine.observe({
      kind: 'condition',
      rule,
      school,
      device,
      subject,
      active,
      atMs,
      ...(message ? { message } : {}),
    });
  }

  signal(m: LiveMessage): void {
    const reg = this.deps.registry.index;
    // A school the registry does not know has no calendar and no names: nothing about it could be judged.
    if (!reg.schools.has(m.school)) return;
    // A device is (school, device). One its school does not register is nobody's: it is listed as unassigned
    // (GET /v1/devices/unassigned), never judged as — or instead of — another school's device of the same id.
    const registered = reg.device(m.school, m.device);
    if (!registered) return;
    const key = entityKey(m.school, m.device);
    const isNetwork = (kind: string) => kind === 'router' || kind === 'switch' || kind === 'ap';
    switch (m.channel) {
      case 'status': {
        // Routers are judged by SNMP reachability, not by the poller's birth; the registry says what it is.
        if (isNetwork(registered.kind)) return;
        const offline = m.message.state === 'offline';
        if (offline) {
          // Whatever the reason, a device that is gone has no "missing data" of its own to report.
          this.lastSeen.delete(key);
          this.cond('data_gap', m.school, m.device, undefined, false, m.atMs);
        }
        // A clean shutdown is a teacher switching off; a replayed (retained) status is an old state, not news.
        if (offline && m.message.reason === 'shutdown') {
          this.cond('device_offline', m.school, m.device, undefined, false, m.atMs);
          return;
        }
        if (offline && m.retained) return;
        this.cond(
          'device_offline',
          m.school,
          m.device,
          undefined,
          offline,
          m.atMs,
          offline ? `MQTT 连接断开（${m.message.reason ?? 'will'}）` : undefined,
        );
        if (!offline)
          this.lastSeen.set(key, {
            school: m.school,
            device: m.device,
            atMs: m.atMs,
            heartbeatS: m.message.heartbeatS ?? 60,
          });
        return;
      }
      case 'iface': {
        const up = m.message.ifaces.find((i) => i.uplink);
        // Only the school's own uplink device speaks for its uplink (and so inhibits its classrooms).
        if (!up || !carriesUplink(reg, m.school, m.device)) return;
        this.uplinkDevice.set(m.school, m.device);
        // A reading proves the router answers, even if its `recovered` event was lost.
        this.uplink(m.school, 'snmp', false, m.atMs, '');
        this.uplink(
          m.school,
          'oper',
          up.operStatus !== 'up',
          m.atMs,
          `出口接口 ${up.name} 状态 ${up.operStatus}`,
        );
        const speedBps = (up.speedMbps ?? 0) * 1e6;
        if (speedBps > 0 && up.inBps !== null && up.outBps !== null) {
          const pct = (100 * Math.max(up.inBps, up.outBps)) / speedBps;
          const threshold = this.rules.uplink_saturated.thresholdPct ?? 90;
          this.cond(
            'uplink_saturated',
            m.school,
            m.device,
            undefined,
            pct >= threshold,
            m.atMs,
            `利用率 ${pct.toFixed(0)} %（阈值 ${threshold} %）`,
          );
        }
        return;
      }
      case 'event': {
        const e = m.message;
        // The school's uplink device: as registered, else its registered router whose readings carry the uplink.
        const uplinkDevice = reg.schools.get(m.school)?.uplinkDevice ?? this.uplinkDevice.get(m.school);
        if (e.type === 'reboot') {
          this.engine.observe({
            kind: 'instant',
            rule: 'device_rebooted',
            school: m.school,
            device: m.device,
            atMs: m.atMs,
            message: e.message,
          });
        } else if ((e.type === 'unreachable' || e.type === 'recovered') && e.subject === 'snmp') {
          if (uplinkDevice === m.device)
            this.uplink(m.school, 'snmp', e.type === 'unreachable', m.atMs, e.message);
          else
            this.cond(
              'snmp_unreachable',
              m.school,
              m.device,
              undefined,
              e.type === 'unreachable',
              m.atMs,
              e.message,
            );
        } else if (e.type === 'fault' || e.type === 'fault_cleared') {
          // Subjects are a known list: a device inventing new ones must not grow the active set without bound.
          const subject = e.subject && FAULT_SUBJECTS.has(e.subject) ? e.subject : 'other';
          this.cond('display_fault', m.school, m.device, subject, e.type === 'fault', m.atMs, e.message);
        } else if (e.type === 'clock_skew') {
          this.cond('clock_skew', m.school, m.device, undefined, true, m.atMs, e.message);
        }
        return;
      }
      case 'telemetry': {
        const t = m.message;
        const rules = this.rules;
        const seen = this.lastSeen.get(key);
        const heartbeatS = seen?.heartbeatS ?? 60;
        this.lastSeen.set(key, { school: m.school, device: m.device, atMs: m.atMs, heartbeatS });
        this.cond('data_gap', m.school, m.device, undefined, false, m.atMs);
        // Readings replayed from a spool after an outage are old by design: only a current reading is judged.
        if (t.ts < (this.newestTs.get(key) ?? 0) || m.atMs - t.ts > 2 * heartbeatS * 1000) {
          this.newestTs.set(key, Math.max(t.ts, this.newestTs.get(key) ?? 0));
          return;
        }
        this.newestTs.set(key, t.ts);
        // A clock ahead of ours (the replay test above catches one behind by more than two heartbeats).
        const skewS = (t.ts - m.atMs) / 1000;
        this.cond(
          'clock_skew',
          m.school,
          m.device,
          undefined,
          Math.abs(skewS) > (rules.clock_skew.skewMaxS ?? 120),
          m.atMs,
          `设备时钟偏差 ${skewS.toFixed(0)} 秒`,
        );
        const d = t.display;
        if (!d) return;
        const lampMax = rules.display_fault.lampHoursMax ?? 4_000;
        if (d.lampHours !== undefined)
          this.cond(
            'display_fault',
            m.school,
            m.device,
            'lamp_hours',
            d.lampHours > lampMax,
            m.atMs,
            `灯泡累计 ${d.lampHours} 小时，超过 ${lampMax}`,
          );
        const tMax = rules.display_fault.temperatureMaxC ?? 70;
        if (d.temperatureC !== undefined)
          this.cond(
            'display_fault',
            m.school,
            m.device,
            'temperature_c',
            d.temperatureC > tMax,
            m.atMs,
            `温度 ${d.temperatureC} °C，超过 ${tMax} °C`,
          );
        if (d.touchOk !== undefined)
          this.cond('display_fault', m.school, m.device, 'touch', !d.touchOk, m.atMs, '触控无响应');
        return;
      }
    }
  }

  private uplink(school: string, which: 'snmp' | 'oper', bad: boolean, atMs: number, message: string): void {
    const f = this.uplinkFlags.get(school) ?? { snmp: false, oper: false };
    f[which] = bad;
    this.uplinkFlags.set(school, f);
    this.cond(
      'uplink_down',
      school,
      undefined,
      undefined,
      f.snmp || f.oper,
      atMs,
      f.snmp || f.oper ? message : undefined,
    );
  }

  /** Telemetry silence from a device that is still connected: `gapFactor` heartbeats without a reading. */
  private gaps(now: number): void {
    const factor = this.rules.data_gap.gapFactor ?? 5;
    for (const s of this.lastSeen.values())
      if (now - s.atMs > factor * s.heartbeatS * 1000)
        this.cond(
          'data_gap',
          s.school,
          s.device,
          undefined,
          true,
          now,
          `${Math.round((now - s.atMs) / 1000)} 秒没有数据`,
        );
  }

  // ---- delivery and state ----------------------------------------------------------------------------------

  private names(): Names {
    const reg = this.deps.registry.index;
    return {
      schoolName: (id) => reg.schools.get(id)?.name ?? id,
      regionNames: (id) => {
        const path = reg.schoolPath(id);
        return path
          ? path
              .split('/')
              .map((r) => reg.regions.get(r)?.name ?? r)
              .join(' ')
          : '';
      },
      regionPath: (id) => reg.schoolPath(id),
      classroomName: (school, device) => {
        const c = reg.device(school, device)?.classroom;
        return c ? reg.classroom(school, c)?.name : undefined;
      },
    };
  }

  private deliver(n: Notification): void {
    const rendered = render(n, this.names(), this.config.linkBaseUrl);
    this.deps.log.info({ school: n.school, title: rendered.title, items: n.items.length }, 'notification');
    const path = this.deps.registry.index.schoolPath(n.school);
    this.deliverer.deliver(this.config.channels as Channel[], n, rendered, path);
    // The notification as points, for the alerts dashboard (buffered and retried by the storage's writer).
    this.deps.storage?.write(
      n.items.map(({ kind, alert: a }) => ({
        measurement: 'alert' as const,
        ts: n.atMs,
        tags: {
          ...(path ? { region: path } : {}),
          school: a.school,
          ...(a.device ? { device: a.device } : {}),
          rule: a.rule,
          severity: a.severity,
          ...(a.subject ? { subject: a.subject } : {}),
        },
        fields: {
          kind,
          firing: kind === 'resolved' ? 0 : 1,
          alert_id: a.id,
          message: a.message,
          affected: a.affected.length,
          ...(kind === 'resolved' ? { duration_s: (n.atMs - a.startedAtMs) / 1000 } : {}),
        },
      })),
    );
    this.dirty = true;
  }

  /** The last good copy of the state file: the file as it was before the last write. */
  get backupFile(): string {
    return `${this.config.stateFile}.bak`;
  }

  /**
   * Set when the state came from the last good copy because the state file was malformed (for /metrics).
   * The state file itself is then kept as `<stateFile>.malformed` for inspection.
   */
  recoveredFrom: string | undefined;
  /** The state file on disk is one this process loaded or wrote: the next write may keep it as the backup. */
  private fileGood = false;

  /**
   * Reads the state file, validated field by field. A malformed file is not a reason to forget every active
   * alert and silence — nor to run on silently without them: the last good copy (`.bak`) is loaded with an
   * error in the log saying which file was used and why; when that is malformed or missing too, start-up is
   * refused naming both files and the first bad field of each. A missing state file is a first start (or a
   * reset by hand: a `.bak` beside it is left alone).
   */
  private load(): void {
    const file = this.config.stateFile;
    const bak = this.backupFile;
    let s: StateFile | undefined;
    try {
      s = readJsonFileAs(file, 'alerts state', stateFileSchema);
      this.fileGood = true;
    } catch (e) {
      if (!(e instanceof JsonFileError)) throw e;
      let good: StateFile | undefined;
      let bakProblem: string;
      try {
        good = readJsonFileAs(bak, 'alerts state', stateFileSchema);
        bakProblem = good === undefined ? `there is no last good copy ${bak}` : '';
      } catch (b) {
        if (!(b instanceof JsonFileError)) throw b;
        bakProblem = `its last good copy is malformed too (${b.message})`;
      }
      if (good === undefined)
        throw new Error(
          `alerts state ${file} is malformed (${e.detail}) and ${bakProblem}: refusing to start without the active alerts and silences. Fix the file, or move both aside to start with an empty alert state (alerts still active are notified again, silences are lost).`,
        );
      const kept = `${file}.malformed`;
      try {
        copyFileSync(file, kept);
      } catch {
        // unreadable: nothing to keep
      }
      this.deps.log.error(
        { file, problem: e.detail, loaded: bak, kept },
        `alerts state ${file} is malformed (${e.detail}): loaded the last good copy ${bak} instead; the malformed file is kept as ${kept}, and the next write replaces it. Changes made after that copy (at most the last write) are lost.`,
      );
      this.recoveredFrom = bak;
      s = good;
    }
    if (s === undefined) {
      // Writes never remove the state file, so it was removed by hand: a reset, which the copy must not undo.
      if (existsSync(bak))
        this.deps.log.warn(
          { file, unused: bak },
          `no alerts state ${file}: starting with an empty alert state; the last good copy ${bak} is not loaded`,
        );
      return;
    }
    this.engine.restore(s.active, s.history, s.queue);
    // Saved by an older version, a silence may name a device without its school: it would match that id in
    // every school, so it is dropped (and said), not applied.
    this.silences = s.silences.filter((x) => silenceSchema.safeParse(x).success);
    if (this.silences.length < s.silences.length)
      this.deps.log.warn(
        { file: this.config.stateFile, dropped: s.silences.length - this.silences.length },
        'saved silences dropped: naming a device without its school (which would silence that id in every school); create them again',
      );
    // Deliveries cut short by the restart are finished now (the engine already counts them as notified).
    this.deliverer.resume(s.deliveries, this.config.channels as Channel[]);
    this.savedVersion = this.engine.version;
  }

  /** Writes the state file when something changed (atomically: temporary file, then rename). */
  save(force: boolean): void {
    if (!force && !this.dirty && this.engine.version === this.savedVersion) return;
    try {
      this.write();
    } catch (err) {
      // A full disk must not take the API down; the next change tries again.
      this.saveFailures++;
      this.deps.log.error({ err, file: this.config.stateFile }, 'alerts state not written');
    }
  }

  /** State-file writes that failed since start. */
  saveFailures = 0;

  private write(): void {
    const state: StateFile = {
      version: 1,
      active: [...this.engine.active.values()],
      history: this.engine.history,
      queue: this.engine.pendingQueue(),
      silences: this.silences,
      deliveries: this.deliverer.records,
    };
    // The file being replaced becomes the last good copy — unless it is the malformed one this process
    // started without (`recoveredFrom`): that would overwrite the copy it was recovered from.
    writeFileAtomic(this.config.stateFile, JSON.stringify(state), 0o600, {
      ...(this.fileGood ? { backup: this.backupFile } : {}),
    });
    this.fileGood = true;
    this.savedVersion = this.engine.version;
    this.dirty = false;
  }

  addSilence(s: Omit<Silence, 'id'>): Silence {
    const silence = { ...s, id: `s${this.now().toString(36)}${Math.random().toString(36).slice(2, 6)}` };
    this.silences.push(silence);
    this.silences = this.silences.filter((x) => x.endsAtMs > this.now());
    this.dirty = true;
    return silence;
  }

  removeSilence(id: string): boolean {
    const n = this.silences.length;
    this.silences = this.silences.filter((s) => s.id !== id);
    this.dirty = this.dirty || this.silences.length !== n;
    return this.silences.length !== n;
  }
}
