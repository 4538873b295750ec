import nodemailer from 'nodemailer';
import { z } from 'zod';
import { secret } from '../../common/redact.js';
import { DeliveryError, defineChannel } from './channel.js';
import { registerChannel } from './registry.js';

/** E-mail over SMTP: the plain-text message, the title as subject. */
registerChannel(
  defineChannel(
    'email',
    {
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
    },
    async (c, r, { timeoutMs }) => {
      const t = nodemailer.createTransport({
        host: c.smtp.host,
        port: c.smtp.port,
        secure: c.smtp.secure,
        ...(c.smtp.username ? { auth: { user: c.smtp.username, pass: c.smtp.password ?? '' } } : {}),
        connectionTimeout: timeoutMs,
        greetingTimeout: timeoutMs,
        socketTimeout: timeoutMs,
      });
      try {
        await t.sendMail({ from: c.from, to: c.to, subject: r.title, text: r.text });
      } catch (e) {
        const code = (e as { responseCode?: number }).responseCode;
        // 5xx is permanent (bad address, refused); 4xx and connection errors are worth another try.
        throw new DeliveryError(`SMTP: ${(e as Error).message}`, !(code && code >= 500));
      } finally {
        t.close();
      }
    },
  ),
);
