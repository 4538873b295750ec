import { z } from 'zod';
import { urlWithSecrets } from '../../common/redact.js';
import { defineChannel, postJson } from './channel.js';
import { registerChannel } from './registry.js';

/** A generic JSON webhook: the notification as data (`Rendered.json`), for any HTTP receiver. */
registerChannel(
  defineChannel(
    'webhook',
    {
      // Whatever a generic webhook carries in its path or query may be its credential.
      url: urlWithSecrets(z.url(), { path: true }).describe(
        'Receiver URL (any HTTP endpoint that takes the notification as JSON).',
      ),
    },
    async (c, r, { timeoutMs }) => {
      await postJson(c.url, r.json, timeoutMs);
    },
  ),
);
