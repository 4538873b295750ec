import { createHmac } from 'node:crypto';
import { z } from 'zod';
import { secret, urlWithSecrets } from '../../common/redact.js';
import { defineChannel, postJson, robotAnswer } from './channel.js';
import { registerChannel } from './registry.js';

/** DingTalk's signature: Base64(HMAC-SHA256(secret, `${timestampMs}\n${secret}`)). */
export function dingtalkSign(secret: string, timestampMs: number): string {
  return createHmac('sha256', secret).update(`${timestampMs}\n${secret}`).digest('base64');
}

/**
 * A DingTalk (钉钉) robot: `msgtype: markdown`, with the optional signature (加签: `timestamp` in ms and `sign`
 * as URL parameters); its URL's `?access_token=` is the credential.
 */
registerChannel(
  defineChannel(
    'dingtalk',
    {
      url: urlWithSecrets(z.url()).describe('Robot webhook URL (`…/robot/send?access_token=…`).'),
      secret: secret(z.string()).optional().describe('Signing secret (加签).'),
    },
    async (c, r, { timeoutMs, now }) => {
      const url = new URL(c.url);
      if (c.secret) {
        url.searchParams.set('timestamp', String(now));
        url.searchParams.set('sign', dingtalkSign(c.secret, now));
      }
      robotAnswer(
        await postJson(
          url.toString(),
          { msgtype: 'markdown', markdown: { title: r.title, text: r.markdown } },
          timeoutMs,
        ),
        'errcode',
      );
    },
  ),
);
