import type { ChannelKind } from './channel.js';

/** The channel kinds registered so far, in registration order (the order of `all.ts`). */
const kinds = new Map<string, ChannelKind>();
/** Set once the configuration schema is built from the kinds (channels/index.ts): later kinds could not be configured. */
let sealed = false;

/** Makes a channel kind available to the configuration (`alerts.channels[].kind`) and the deliverer. */
export function registerChannel(kind: ChannelKind): void {
  if (sealed)
    throw new Error(
      `alert channel kind ${kind.kind} registered after the configuration schema was built: add its import to alerting/channels/all.ts`,
    );
  if (kinds.has(kind.kind)) throw new Error(`alert channel kind ${kind.kind} registered twice`);
  kinds.set(kind.kind, kind);
}

/** The kinds registered, for the configuration schema; no kind may be registered after this. */
export function sealChannelKinds(): ChannelKind[] {
  sealed = true;
  return [...kinds.values()];
}

export function channelKind(kind: string): ChannelKind | undefined {
  return kinds.get(kind);
}
