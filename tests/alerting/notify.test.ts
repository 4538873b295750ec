import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { type Channel, channelSchema, send } from '../../alerting/channels/index.js';
import { Deliverer } from '../../alerting/deliver.js';
import type { Notification } from '../../alerting/engine.js';
import { type Names, render } from '../../alerting/render.js';
import { silentLogger } from '../../common/log.js';
import { alertOf } from '../helpers/alerts.js';
import { waitFor } from '../helpers/influx.js';

/** A local HTTP receiver: records each request; answers from `replies` in turn (then 200 `{errcode:0}`). */
async function receiver(replies: { status: number; body: unknown }[] = []) {
  const got: { url: string; body: unknown }[] = [];
  const server: Server = createServer((req, res) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      data += c;
    });
    req.on('end', () => {
      got.push({ url: req.url ?? '', body: JSON.parse(data) });
      const r = replies.shift() ?? { status: 200, body: { errcode: 0, errmsg: 'ok', code: 0 } };
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify(r.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { url, got };
}
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const names: Names = {
  schoolName: () => '西湖区第一小学',
  regionNames: () => '浙江省 杭州市 西湖区',
  regionPath: () => '330000/330100/330106',
  classroomName: (_school, d) => (d === 'pn-01' ? '一(1)班' : undefined),
};
const alert = alertOf;
const outage: Notification = {
  school: 'A',
  atMs: Date.parse('2026-10-08T08:07:34+08:00'),
  items: [{ kind: 'firing', alert: alert({}) }],
};
const TITLE = '【严重】浙江省 杭州市 西湖区 西湖区第一小学：学校出口中断';
const LINE =
  '告警：学校出口中断 — gw（开始 2026-10-08 08:06）。SNMP 10.33.12.1:161 无应答；受影响设备 2 台：pn-01、pn-02';
const LINK = 'https://monitor.edu.example/v1/schools/A';

describe('messages', () => {
  it('are in Chinese with region, school, classroom names and a link back', () => {
    const r = render(outage, names, 'https://monitor.edu.example/');
    expect(r.title).toBe(TITLE);
    expect(r.text).toBe(`${TITLE}\n${LINE}\n详情：${LINK}`);
    const room = render(
      {
        ...outage,
        items: [
          {
            kind: 'resolved',
            alert: alert({
              rule: 'device_offline',
              device: 'pn-01',
              affected: [],
              message: '',
              resolvedAtMs: Date.parse('2026-10-08T08:30:00+08:00'),
            }),
          },
        ],
      },
      names,
      undefined,
    );
    expect(room.text).toBe(
      '【已恢复】浙江省 杭州市 西湖区 西湖区第一小学：教室设备离线\n已恢复：教室设备离线 — 一(1)班 pn-01（开始 2026-10-08 08:06，恢复 2026-10-08 08:30）',
    );
  });
});

describe('robots and webhooks, against local receivers', () => {
  const r = render(outage, names, 'https://monitor.edu.example');
  const parse = (c: unknown) => channelSchema.parse(c) as Channel;

  it('WeCom group robot: markdown', async () => {
    const rx = await receiver();
    await send(parse({ kind: 'wecom', name: 'w', url: `${rx.url}/cgi-bin/webhook/send?key=K` }), r, {
      timeoutMs: 5_000,
      now: Date.now(),
    });
    expect(rx.got).toEqual([
      {
        url: '/cgi-bin/webhook/send?key=K',
        body: { msgtype: 'markdown', markdown: { content: `### ${TITLE}\n- ${LINE}\n[查看详情](${LINK})` } },
      },
    ]);
  });

  it('DingTalk robot: markdown, signed with the secret', async () => {
    const rx = await receiver();
    const now = 1_791_418_000_123;
    await send(
      parse({
        kind: 'dingtalk',
        name: 'd',
        url: `${rx.url}/robot/send?access_token=T`,
        secret: 'SEC0123456789',
      }),
      r,
      { timeoutMs: 5_000, now },
    );
    const u = new URL(rx.got[0]!.url, 'http://x');
    expect(u.searchParams.get('access_token')).toBe('T');
    expect(u.searchParams.get('timestamp')).toBe(String(now));
    // Computed here the way DingTalk's documentation does it.
    const expected = createHmac('sha256', 'SEC0123456789').update(`${now}\nSEC0123456789`).digest('base64');
    expect(u.searchParams.get('sign')).toBe(expected);
    expect(rx.got[0]!.body).toEqual({
      msgtype: 'markdown',
      markdown: { title: TITLE, text: `### ${TITLE}\n- ${LINE}\n[查看详情](${LINK})` },
    });
  });

  it('Feishu robot: text, signed in the body', async () => {
    const rx = await receiver();
    const now = 1_791_418_000_999;
    await send(
      parse({ kind: 'feishu', name: 'f', url: `${rx.url}/open-apis/bot/v2/hook/H`, secret: 'fsec' }),
      r,
      { timeoutMs: 5_000, now },
    );
    const ts = Math.floor(now / 1000);
    expect(rx.got[0]!.body).toEqual({
      timestamp: String(ts),
      sign: createHmac('sha256', `${ts}\nfsec`).update('').digest('base64'),
      msg_type: 'text',
      content: { text: r.text },
    });
  });

  it('generic webhook: the notification as JSON', async () => {
    const rx = await receiver();
    await send(parse({ kind: 'webhook', name: 'h', url: `${rx.url}/hook` }), r, {
      timeoutMs: 5_000,
      now: Date.now(),
    });
    expect(rx.got[0]!.body).toMatchObject({
      version: 1,
      school: 'A',
      schoolName: '西湖区第一小学',
      region: '330000/330100/330106',
      link: LINK,
      items: [
        {
          kind: 'firing',
          rule: 'uplink_down',
          severity: 'critical',
          device: 'gw',
          affected: ['pn-01', 'pn-02'],
        },
      ],
    });
  });

  it('retries with back-off on 5xx and robot rate limits, gives up on a permanent refusal, and records both', async () => {
    const rx = await receiver([
      { status: 502, body: {} },
      { status: 200, body: { errcode: 45009, errmsg: 'api freq out of limit' } },
    ]);
    const bad = await receiver([{ status: 200, body: { errcode: 93000, errmsg: 'invalid webhook url' } }]);
    const d = new Deliverer({
      log: silentLogger(),
      maxAttempts: 5,
      minDelayMs: 20,
      maxDelayMs: 100,
      keep: 100,
    });
    const channels = [
      parse({ kind: 'wecom', name: 'ok-after-retries', url: `${rx.url}/send` }),
      parse({ kind: 'wecom', name: 'broken', url: `${bad.url}/send` }),
      parse({
        kind: 'wecom',
        name: 'other-county',
        url: `${bad.url}/send`,
        regions: ['330000/330100/330108'],
      }),
    ];
    d.deliver(channels, outage, r, '330000/330100/330106');
    await waitFor(() => d.records.every((x) => x.status !== 'pending'), { timeoutMs: 5_000 });
    expect(d.records.map((x) => [x.channel, x.status, x.attempts])).toEqual([
      ['ok-after-retries', 'delivered', 3],
      ['broken', 'failed', 1],
    ]);
    expect(d.records[1]!.lastError).toMatch(/93000 invalid webhook url/);
    expect(rx.got).toHaveLength(3);
    d.stop();
  });
});

describe('e-mail over SMTP, against a local SMTP receiver', () => {
  it('sends the message as text with the title as subject', async () => {
    const mails: { from: string; to: string[]; raw: string }[] = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      onData(stream, session, cb) {
        let raw = '';
        stream.setEncoding('utf8');
        stream.on('data', (c: string) => {
          raw += c;
        });
        stream.on('end', () => {
          mails.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw,
          });
          cb();
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
    const port = (server.server.address() as { port: number }).port;
    const channel = channelSchema.parse({
      kind: 'email',
      name: 'm',
      smtp: { host: '127.0.0.1', port, secure: false },
      from: 'cfm@edu.example',
      to: ['oncall@edu.example'],
    });
    await send(channel, render(outage, names, 'https://monitor.edu.example'), {
      timeoutMs: 5_000,
      now: Date.now(),
    });
    expect(mails).toHaveLength(1);
    expect(mails[0]).toMatchObject({ from: 'cfm@edu.example', to: ['oncall@edu.example'] });
    const parsed = await simpleParser(mails[0]!.raw);
    expect(parsed.subject).toBe(TITLE);
    expect(parsed.text?.trim()).toBe(`${TITLE}\n${LINE}\n详情：${LINK}`);
  });
});
