import { z } from 'zod';
import './all.js';
import type { Rendered } from '../render.js';
import { type Channel, DeliveryError, type SendContext } from './channel.js';
import { channelKind, sealChannelKinds } from './registry.js';

export { type Channel, DeliveryError } from './channel.js';

/**
 * One channel of `alerts.channels`, by its `kind`: built from the kinds registered (all.ts, then any a caller
 * registered before this module was first loaded).
 */
export const channelSchema: z.ZodType<Channel> = z.discriminatedUnion(
  'kind',
  sealChannelKinds().map((k) => k.schema) as [z.ZodObject, ...z.ZodObject[]],
) as unknown as z.ZodType<Channel>;

/** Sends one rendered message on a configured channel. */
export function send(channel: Channel, message: Rendered, ctx: SendContext): Promise<void> {
  const k = channelKind(channel.kind);
  if (!k) return Promise.reject(new DeliveryError(`no channel kind ${channel.kind}`, false));
  return k.send(channel, message, ctx);
}
