import { createHmac } from 'node:crypto';
import { z } from 'zod';
import { secret, urlWithSecrets } from '../../common/redact.js';
import { defineChannel, postJson, robotAnswer } from './channel.js';
import { registerChannel } from './registry.js';

/** Feishu's signature: Base64(HMAC-SHA256(`${timestampS}\n${secret}`, '')). */
export function feishuSign(secret: string, timestampS: number): string {
  return createHmac('sha256', `${timestampS}\n${secret}`).update('').digest('base64');
}

/**
 * A Feishu (飞书) robot: `msg_type: text`, with the optional signature (签名校验: `timestamp` in s and `sign` in
 * the body); its URL's path `/hook/<token>` is the credential.
 */
registerChannel(
  defineChannel(
    'feishu',
    {
      url: urlWithSecrets(z.url(), { path: true }).describe('Robot webhook URL (`…/bot/v2/hook/<token>`).'),
      secret: secret(z.string()).optional().describe('Signing secret (签名校验).'),
    },
    async (c, r, { timeoutMs, now }) => {
      const ts = Math.floor(now / 1000);
      const signed = c.secret ? { timestamp: String(ts), sign: feishuSign(c.secret, ts) } : {};
      robotAnswer(
        await postJson(c.url, { ...signed, msg_type: 'text', content: { text: r.text } }, timeoutMs),
        'code',
      );
    },
  ),
);
