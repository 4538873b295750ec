import { z } from 'zod';
import { regionPathSchema } from '../../contracts/ids.js';
import type { Rendered } from '../render.js';
import { SEVERITIES } from '../rules.js';

/**
 * A delivery channel kind: its configuration (a zod object with `kind` and the fields every channel has) and
 * how it sends one rendered message. Each kind is one file in this folder that registers itself
 * (`registerChannel`), listed by one line in `all.ts` — Telegraf's shape for its plugins.
 *
 * `send` throws `DeliveryError` with `retry` saying whether another attempt may succeed (a rate limit, a
 * timeout: yes; a refused address or a bad request: no). The deliverer (deliver.ts) retries, records and
 * scrubs the channel's secrets from every error it keeps.
 */
export interface ChannelKind<S extends z.ZodObject = z.ZodObject> {
  kind: string;
  schema: S;
  send(channel: z.infer<S>, message: Rendered, ctx: SendContext): Promise<void>;
}

export interface SendContext {
  /** Per attempt: connect, answer and all. */
  timeoutMs: number;
  /** The clock, for signed requests (DingTalk, Feishu). */
  now: number;
}

/** The fields of every channel: which alerts it takes. */
export const channelBaseShape = {
  name: z.string().min(1).max(64),
  regions: z.array(regionPathSchema).optional().describe('Only alerts of schools within these regions.'),
  minSeverity: z.enum(SEVERITIES).default('info'),
};
const channelBaseSchema = z.object(channelBaseShape);
/** Any configured channel, as the deliverer sees it. */
export type Channel = z.infer<typeof channelBaseSchema> & { kind: string };

/**
 * A channel kind from its name, its own fields and its sender: the schema is a strict object of `kind`, the
 * kind's fields and the common ones (in that order: the generated reference lists them so).
 */
export function defineChannel<K extends string, F extends z.ZodRawShape>(
  kind: K,
  fields: F,
  send: (
    channel: z.infer<z.ZodObject<{ kind: z.ZodLiteral<K> } & F & typeof channelBaseShape>>,
    message: Rendered,
    ctx: SendContext,
  ) => Promise<void>,
): ChannelKind {
  for (const taken of ['kind', ...Object.keys(channelBaseShape)])
    if (taken in fields)
      throw new Error(`alert channel kind ${kind}: its field ${taken} is one every channel has`);
  const schema = z.strictObject({ kind: z.literal(kind), ...fields, ...channelBaseShape });
  return { kind, schema, send: send as ChannelKind['send'] };
}

export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
  ) {
    super(message);
  }
}

/** Rate limits, worth retrying: WeCom 45009, DingTalk 130101, Feishu 11232 (and 9499, "too many requests"). */
const RATE_LIMIT_CODES = new Set([45009, 130101, 11232, 9499]);

/** POSTs JSON; 429 and 5xx (and a robot's rate-limit code in a 4xx body) are worth another try. */
export async function postJson(url: string, body: unknown, timeoutMs: number): Promise<unknown> {
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
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const b = parsed as Record<string, unknown> | undefined;
    throw new DeliveryError(
      `HTTP ${res.status}: ${text.slice(0, 200)}`,
      RATE_LIMIT_CODES.has((b?.errcode ?? b?.code) as number),
    );
  }
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    return {};
  }
}

/** The robots answer 200 with an error code in the body; a rate limit there is worth retrying. */
export function robotAnswer(body: unknown, codeKey: 'errcode' | 'code'): void {
  const b = body as Record<string, unknown>;
  const code = b?.[codeKey] ?? b?.StatusCode;
  if (code === undefined || code === 0) return;
  const msg = String(b.errmsg ?? b.msg ?? b.StatusMessage ?? '');
  const retry = RATE_LIMIT_CODES.has(code as number) || code === -1;
  throw new DeliveryError(`robot refused: ${code} ${msg}`.trim(), retry);
}
