import { describe, expect, it } from 'vitest';
import type { Notification } from '../../alerting/engine.js';
import { silentLogger } from '../../common/log.js';
import { configFields } from '../../common/redact.js';
import { alertOf } from '../helpers/alerts.js';
// A channel kind registers itself before the configuration schema is built: import it first.
import { PAGER } from './fixtures/pager-channel.js';

/** Adding a channel kind is one file and one registration line (alerting/channels/all.ts; here the import above). */
const { alertsConfigSchema } = await import('../../alerting/config.js');
const { Deliverer } = await import('../../alerting/deliver.js');
const { render } = await import('../../alerting/render.js');

const NOTIFICATION: Notification = {
  school: '3301060001',
  atMs: Date.parse('2026-10-08T08:05:00+08:00'),
  items: [
    {
      kind: 'firing',
      alert: alertOf({
        id: 'a1',
        key: 'device_offline|3301060001|pn-1|',
        rule: 'device_offline',
        severity: 'warning',
        school: '3301060001',
        device: 'pn-1',
        firingAtMs: Date.parse('2026-10-08T08:05:00+08:00'),
        affected: [],
        message: 'MQTT 连接断开（will）',
      }),
    },
  ],
};
const NAMES = {
  schoolName: () => '西湖区第一小学',
  regionNames: () => '浙江省 杭州市 西湖区',
  regionPath: () => '330000/330100/330106',
  classroomName: () => '一(1)班',
};

describe('a sixth channel kind', () => {
  it('must register before the configuration schema is built, and may not redefine a common field', async () => {
    const { defineChannel } = await import('../../alerting/channels/channel.js');
    const { registerChannel } = await import('../../alerting/channels/registry.js');
    const send = async () => {};
    expect(() => registerChannel(defineChannel('late', {}, send))).toThrow(
      /add its import to alerting\/channels\/all.ts/,
    );
    const { z } = await import('zod');
    expect(() => defineChannel('clash', { name: z.number() }, send)).toThrow(
      /field name is one every channel has/,
    );
    expect(() => defineChannel('clash', { kind: z.string() }, send)).toThrow(/field kind/);
  });

  it('is configured like the five built in, validated by its own fields, its secret marked', () => {
    const config = alertsConfigSchema.parse({
      channels: [
        { kind: 'wecom', name: 'w', url: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K' },
        { kind: 'pager', name: '值班寻呼', number: '13800138000', pin: '4711', minSeverity: 'warning' },
      ],
    });
    expect(config.channels.map((c) => c.kind)).toEqual(['wecom', 'pager']);
    expect(() =>
      alertsConfigSchema.parse({ channels: [{ kind: 'pager', name: 'p', number: 'call me', pin: '1' }] }),
    ).toThrow(/number/);
    expect(() => alertsConfigSchema.parse({ channels: [{ kind: 'fax', name: 'f' }] })).toThrow();
    const fields = configFields(alertsConfigSchema, 'alerts');
    expect(fields.find((f) => f.path === 'alerts.channels[]{kind=pager}.pin')?.secret).toBe('value');
  });

  it('receives notifications through the deliverer, and its secret is scrubbed from what is kept', async () => {
    const { channels } = alertsConfigSchema.parse({
      channels: [
        { kind: 'pager', name: 'ok', number: '13800138000', pin: '4711' },
        { kind: 'pager', name: 'refused', number: '0571', pin: '98765' },
        { kind: 'pager', name: 'critical only', number: '13900139000', pin: '1', minSeverity: 'critical' },
      ],
    });
    const deliverer = new Deliverer({
      log: silentLogger(),
      maxAttempts: 1,
      minDelayMs: 10,
      maxDelayMs: 100,
      keep: 10,
    });
    const rendered = render(NOTIFICATION, NAMES, undefined);
    deliverer.deliver(channels, NOTIFICATION, rendered, '330000/330100/330106');
    await expect.poll(() => deliverer.records.filter((r) => r.status !== 'pending').length).toBe(2);
    expect(PAGER).toEqual([{ number: '13800138000', text: rendered.title }]);
    const refused = deliverer.records.find((r) => r.channel === 'refused')!;
    expect(refused.status).toBe('failed');
    expect(refused.lastError).toContain('gateway refused 0571');
    expect(refused.lastError).not.toContain('98765');
    expect(deliverer.records.map((r) => r.channel)).not.toContain('critical only');
  });
});
