import { createHmac } from 'node:crypto';
import nodemailer from 'nodemailer';
import type { Logger } from 'pino';
import { z } from 'zod';
import { scrubText, secret, secretValues, urlWithSecrets } from '../common/redact.js';
import { regionPathSchema, regionWithin } from '../contracts/ids.js';
import type { Notification, NotificationItem } from './engine.js';
import { RULE_TITLES, SEVERITIES, type Severity } from './rules.js';

/**
 * Delivery of notifications where staff already are: a generic JSON webhook, WeCom (企业微信) and DingTalk
 * (钉钉) and Feishu (飞书) group robots, and e-mail over SMTP. Each delivery is retried with exponential
 * back-off; every outcome is recorded (the API lists failures, /metrics counts them).
 *
 * Robot payloads follow the vendors' documented formats: WeCom `msgtype: markdown`; DingTalk `msgtype:
 * markdown` with the optional signature (`timestamp` in ms, HMAC-SHA256 of "timestamp\nsecret" keyed by the
 * secret, Base64, as URL parameters); Feishu `msg_type: text` with the optional signature (`timestamp` in s,
 * HMAC-SHA256 keyed by "timestamp\nsecret" over an empty message, Base64, in the body).
 */
const common = {
  name: z.string().min(1).max(64),
  regions: z.array(regionPathSchema).optional().describe('Only alerts of schools within these regions.'),
  minSeverity: z.enum(SEVERITIES).default('info'),
};
// Robot URLs are credentials: WeCom's `?key=`, DingTalk's `?access_token=`, Feishu's `/hook/<token>` path, and
// whatever a generic webhook carries in its path or query.
export const channelSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('webhook'),
    url: urlWithSecrets(z.url(), { path: true }).describe(
      'Receiver URL (any HTTP endpoint that takes the notification as JSON).',
    ),
    ...common,
  }),
  z.strictObject({
    kind: z.literal('wecom'),
    url: urlWithSecrets(z.url()).describe('Robot webhook URL (`…/cgi-bin/webhook/send?key=…`).'),
    ...common,
  }),
  z.strictObject({
    kind: z.literal('dingtalk'),
    url: urlWithSecrets(z.url()).describe('Robot webhook URL (`…/robot/send?access_token=…`).'),
    secret: secret(z.string()).optional().describe('Signing secret (加签).'),
    ...common,
  }),
  z.strictObject({
    kind: z.literal('feishu'),
    url: urlWithSecrets(z.url(), { path: true }).describe('Robot webhook URL (`…/bot/v2/hook/<token>`).'),
    secret: secret(z.string()).optional().describe('Signing secret (签名校验).'),
    ...common,
  }),
  z.strictObject({
    kind: z.literal('email'),
    smtp: z.strictObject({
      host: z.string().min(1),
      port: z.number().int().min(1).max(65_535).default(465),
      secure: z
        .boolean()
        .default(true)
        .describe('TLS from the start (465); false = STARTTLS if offered (587/25).'),
      username: z.string().optional(),
      password: secret(z.string()).optional().describe('SMTP password.'),
    }),
    from: z.string().min(3),
    to: z.array(z.string().min(3)).min(1),
    ...common,
  }),
]);
export type Channel = z.infer<typeof channelSchema>;

/** Names for messages, from the registry. */
export interface Names {
  schoolName(school: string): string;
  /** Region names from the top, e.g. 浙江省 杭州市 西湖区. */
  regionNames(school: string): string;
  regionPath(school: string): string | undefined;
  classroomName(school: string, device: string): string | undefined;
}

export interface Rendered {
  title: string;
  /** Markdown for the robots that render it. */
  markdown: string;
  /** Plain text (Feishu text messages, e-mail). */
  text: string;
  severity: Severity;
  /** The highest severity among what a resolve-only message resolves. */
  resolvedSeverity: Severity;
  /** The notification as data, for the generic webhook. */
  json: unknown;
}

const KIND_LABEL: Record<NotificationItem['kind'], string> = {
  firing: '告警',
  reminder: '仍未恢复',
  resolved: '已恢复',
};
const SEVERITY_LABEL: Record<Severity, string> = { info: '提示', warning: '警告', critical: '严重' };
const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

/** China Standard Time, as staff read it: 2026-10-08 08:05. */
export function cst(ms: number): string {
  return new Date(ms + 8 * 3_600_000).toISOString().slice(0, 16).replace('T', ' ');
}

export function render(n: Notification, names: Names, linkBase: string | undefined): Rendered {
  const severity = n.items.reduce<Severity>(
    (s, i) => (i.kind !== 'resolved' && RANK[i.alert.severity] > RANK[s] ? i.alert.severity : s),
    'info',
  );
  const allResolved = n.items.every((i) => i.kind === 'resolved');
  const resolvedSeverity = n.items.reduce<Severity>(
    (s, i) => (i.kind === 'resolved' && RANK[i.alert.severity] > RANK[s] ? i.alert.severity : s),
    'info',
  );
  const school = names.schoolName(n.school);
  const where = `${names.regionNames(n.school)} ${school}`.trim();
  const title = `【${allResolved ? '已恢复' : SEVERITY_LABEL[severity]}】${where}：${[...new Set(n.items.map((i) => RULE_TITLES[i.alert.rule]))].join('、')}`;
  const lines = n.items.map((i) => {
    const a = i.alert;
    const room = a.device ? names.classroomName(a.school, a.device) : undefined;
    const target = [room, a.device].filter(Boolean).join(' ');
    const since = `开始 ${cst(a.startedAtMs)}`;
    const end = i.kind === 'resolved' && a.resolvedAtMs ? `，恢复 ${cst(a.resolvedAtMs)}` : '';
    const affected =
      a.affected.length > 0
        ? `；受影响设备 ${a.affected.length} 台：${a.affected.slice(0, 20).join('、')}${a.affected.length > 20 ? ' 等' : ''}`
        : '';
    const flap = a.flapping ? '（频繁波动）' : '';
    return `${KIND_LABEL[i.kind]}：${RULE_TITLES[a.rule]}${flap}${target ? ` — ${target}` : ''}（${since}${end}）${a.message ? `。${a.message}` : ''}${affected}`;
  });
  const link = linkBase
    ? `${linkBase.replace(/\/$/, '')}/v1/schools/${encodeURIComponent(n.school)}`
    : undefined;
  const text = [title, ...lines, ...(link ? [`详情：${link}`] : [])].join('\n');
  const markdown = [
    `### ${title}`,
    ...lines.map((l) => `- ${l}`),
    ...(link ? [`[查看详情](${link})`] : []),
  ].join('\n');
  const json = {
    version: 1,
    school: n.school,
    schoolName: school,
    region: names.regionPath(n.school) ?? null,
    regionNames: names.regionNames(n.school),
    atMs: n.atMs,
    link: link ?? null,
    title,
    items: n.items.map((i) => ({
      kind: i.kind,
      id: i.alert.id,
      rule: i.alert.rule,
      severity: i.alert.severity,
      device: i.alert.device,
      classroom: i.alert.device ? (names.classroomName(i.alert.school, i.alert.device) ?? null) : null,
      subject: i.alert.subject,
      message: i.alert.message,
      startedAtMs: i.alert.startedAtMs,
      resolvedAtMs: i.alert.resolvedAtMs,
      affected: i.alert.affected,
      flapping: i.alert.flapping,
    })),
  };
  return { title, markdown, text, severity, resolvedSeverity, json };
}

/** DingTalk's signature: Base64(HMAC-SHA256(secret, `${timestampMs}\n${secret}`)). */
export function dingtalkSign(secret: string, timestampMs: number): string {
  return createHmac('sha256', secret).update(`${timestampMs}\n${secret}`).digest('base64');
}

/** Feishu's signature: Base64(HMAC-SHA256(`${timestampS}\n${secret}`, '')). */
export function feishuSign(secret: string, timestampS: number): string {
  return createHmac('sha256', `${timestampS}\n${secret}`).update('').digest('base64');
}

export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
  ) {
    super(message);
  }
}

async function post(url: string, body: unknown, timeoutMs: number): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new DeliveryError(`no answer: ${(e as Error).message}`, true);
  }
  const text = await res.text();
  if (res.status === 429 || res.status >= 500) throw new DeliveryError(`HTTP ${res.status}`, true);
  if (!res.ok) {
    // A robot may say why in the body (a rate limit answered with 4xx is worth another try).
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const code =
      (body as Record<string, unknown> | undefined)?.errcode ??
      (body as Record<string, unknown> | undefined)?.code;
    throw new DeliveryError(
      `HTTP ${res.status}: ${text.slice(0, 200)}`,
      RATE_LIMIT_CODES.has(code as number),
    );
  }
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    return {};
  }
}

/** Rate limits, worth retrying: WeCom 45009, DingTalk 130101, Feishu 11232 (and 9499, "too many requests"). */
const RATE_LIMIT_CODES = new Set([45009, 130101, 11232, 9499]);

/** The robots answer 200 with an error code in the body; a rate limit there is worth retrying. */
function robotAnswer(body: unknown, codeKey: 'errcode' | 'code'): void {
  const b = body as Record<string, unknown>;
  const code = b?.[codeKey] ?? b?.StatusCode;
  if (code === undefined || code === 0) return;
  const msg = String(b.errmsg ?? b.msg ?? b.StatusMessage ?? '');
  const retry = RATE_LIMIT_CODES.has(code as number) || code === -1;
  throw new DeliveryError(`robot refused: ${code} ${msg}`.trim(), retry);
}

export async function send(
  channel: Channel,
  r: Rendered,
  timeoutMs = 10_000,
  now = Date.now(),
): Promise<void> {
  switch (channel.kind) {
    case 'webhook':
      await post(channel.url, r.json, timeoutMs);
      return;
    case 'wecom':
      robotAnswer(
        await post(channel.url, { msgtype: 'markdown', markdown: { content: r.markdown } }, timeoutMs),
        'errcode',
      );
      return;
    case 'dingtalk': {
      const url = new URL(channel.url);
      if (channel.secret) {
        url.searchParams.set('timestamp', String(now));
        url.searchParams.set('sign', dingtalkSign(channel.secret, now));
      }
      robotAnswer(
        await post(
          url.toString(),
          { msgtype: 'markdown', markdown: { title: r.title, text: r.markdown } },
          timeoutMs,
        ),
        'errcode',
      );
      return;
    }
    case 'feishu': {
      const ts = Math.floor(now / 1000);
      const signed = channel.secret ? { timestamp: String(ts), sign: feishuSign(channel.secret, ts) } : {};
      robotAnswer(
        await post(channel.url, { ...signed, msg_type: 'text', content: { text: r.text } }, timeoutMs),
        'code',
      );
      return;
    }
    case 'email': {
      const t = nodemailer.createTransport({
        host: channel.smtp.host,
        port: channel.smtp.port,
        secure: channel.smtp.secure,
        ...(channel.smtp.username
          ? { auth: { user: channel.smtp.username, pass: channel.smtp.password ?? '' } }
          : {}),
        connectionTimeout: timeoutMs,
        greetingTimeout: timeoutMs,
        socketTimeout: timeoutMs,
      });
      try {
        await t.sendMail({ from: channel.from, to: channel.to, subject: r.title, text: r.text });
      } catch (e) {
        const code = (e as { responseCode?: number }).responseCode;
        // 5xx is permanent (bad address, refused); 4xx and connection errors are worth another try.
        throw new DeliveryError(`SMTP: ${(e as Error).message}`, !(code && code >= 500));
      } finally {
        t.close();
      }
      return;
    }
  }
}

/** Whether a channel wants a notification (its regions and minimum severity). */
export function wants(
  channel: Channel,
  regionPath: string | undefined,
  r: Rendered,
  resolvedOnly: boolean,
): boolean {
  if (
    channel.regions &&
    !channel.regions.some((scope) => regionPath !== undefined && regionWithin(regionPath, scope))
  )
    return false;
  // A resolve goes where its alert went: a channel above its severity never heard of it.
  return RANK[resolvedOnly ? r.resolvedSeverity : r.severity] >= RANK[channel.minSeverity];
}

export interface DeliveryRecord {
  id: string;
  channel: string;
  school: string;
  title: string;
  createdAtMs: number;
  attempts: number;
  status: 'pending' | 'delivered' | 'failed';
  lastError: string | null;
  nextAttemptAtMs: number | null;
  /** The message, kept while pending so a restart can finish the delivery. */
  message?: Rendered | undefined;
}

/**
 * Sends each (channel, message) with retries: waits 1 s, 2 s, 4 s … up to `maxDelayMs`, at most `maxAttempts`
 * times; a permanent refusal (4xx, a bad address) fails at once. Records every delivery for the API.
 */
export class Deliverer {
  readonly records: DeliveryRecord[] = [];
  private seq = 0;
  private timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  delivered = 0;
  failed = 0;

  constructor(
    private readonly opts: {
      log: Logger;
      maxAttempts: number;
      minDelayMs: number;
      maxDelayMs: number;
      keep: number;
      send?: typeof send;
      onChange?: () => void;
    },
  ) {}

  deliver(channels: readonly Channel[], n: Notification, r: Rendered, regionPath: string | undefined): void {
    const resolvedOnly = n.items.every((i) => i.kind === 'resolved');
    for (const c of channels) {
      if (!wants(c, regionPath, r, resolvedOnly)) continue;
      const rec: DeliveryRecord = {
        id: `d${Date.now().toString(36)}-${++this.seq}`,
        channel: c.name,
        school: n.school,
        title: r.title,
        createdAtMs: Date.now(),
        attempts: 0,
        status: 'pending',
        lastError: null,
        nextAttemptAtMs: Date.now(),
        message: r,
      };
      this.records.push(rec);
      if (this.records.length > this.opts.keep) this.records.splice(0, this.records.length - this.opts.keep);
      void this.attempt(c, r, rec);
    }
  }

  private async attempt(c: Channel, r: Rendered, rec: DeliveryRecord): Promise<void> {
    if (this.stopped) return;
    rec.attempts++;
    try {
      await (this.opts.send ?? send)(c, r);
      rec.status = 'delivered';
      rec.lastError = null;
      rec.nextAttemptAtMs = null;
      rec.message = undefined;
      this.delivered++;
    } catch (e) {
      const raw = e instanceof DeliveryError ? e : new DeliveryError((e as Error).message, true);
      // The API lists this and the log keeps it: fetch and nodemailer quote the URL or server they failed on.
      const err = new DeliveryError(scrubText(raw.message, secretValues(channelSchema, c)), raw.retry);
      rec.lastError = err.message;
      if (this.stopped) return; // stopping: no new timers; the record stays pending in the state file
      if (!err.retry || rec.attempts >= this.opts.maxAttempts) {
        rec.status = 'failed';
        rec.nextAttemptAtMs = null;
        rec.message = undefined;
        this.failed++;
        this.opts.log.warn(
          { channel: c.name, school: rec.school, attempts: rec.attempts, err: err.message },
          'notification not delivered',
        );
      } else {
        const delay = Math.min(this.opts.maxDelayMs, this.opts.minDelayMs * 2 ** (rec.attempts - 1));
        rec.nextAttemptAtMs = Date.now() + delay;
        const t = setTimeout(() => {
          this.timers.delete(t);
          void this.attempt(c, r, rec);
        }, delay);
        t.unref();
        this.timers.add(t);
      }
    }
    this.opts.onChange?.();
  }

  /** After a restart: finishes deliveries that were still pending, on channels that still exist. */
  resume(records: DeliveryRecord[], channels: readonly Channel[]): void {
    for (const rec of records) {
      const c = channels.find((x) => x.name === rec.channel);
      this.records.push(rec);
      if (rec.status !== 'pending') continue;
      if (!c || !rec.message) {
        Object.assign(rec, {
          status: 'failed',
          lastError: 'channel no longer configured',
          nextAttemptAtMs: null,
          message: undefined,
        });
        continue;
      }
      void this.attempt(c, rec.message, rec);
    }
    if (this.records.length > this.opts.keep) this.records.splice(0, this.records.length - this.opts.keep);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
