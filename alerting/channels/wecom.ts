import { z } from 'zod';
import { urlWithSecrets } from '../../common/redact.js';
import { defineChannel, postJson, robotAnswer } from './channel.js';
import { registerChannel } from './registry.js';

/** A WeCom (企业微信) group robot: `msgtype: markdown`; its URL's `?key=` is the credential. */
registerChannel(
  defineChannel(
    'wecom',
    { url: urlWithSecrets(z.url()).describe('Robot webhook URL (`…/cgi-bin/webhook/send?key=…`).') },
    async (c, r, { timeoutMs }) => {
      robotAnswer(
        await postJson(c.url, { msgtype: 'markdown', markdown: { content: r.markdown } }, timeoutMs),
        'errcode',
      );
    },
  ),
);
