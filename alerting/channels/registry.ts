import type { ChannelKind } from './channel.js';

/** The channel kinds registered so far, in registration order (the order of `all.ts`). */
const kinds = new Map<string, ChannelKind>();

/** Makes a channel kind available to the configuration (`alerts.channels[].kind`) and the deliverer. */
export function registerChannel(kind: ChannelKind): void {
  if (kinds.has(kind.kind)) throw new Error(`alert channel kind ${kind.kind} registered twice`);
  kinds.set(kind.kind, kind);
}

export function channelKinds(): ChannelKind[] {
  return [...kinds.values()];
}

export function channelKind(kind: string): ChannelKind | undefined {
  return kinds.get(kind);
}
