/**
 * A school uplink's capacity, and its utilisation: one rule for the collector (the `util_*_pct` it stores), the
 * rollup and reports (which read them), the live view and the `uplink_saturated` alert.
 *
 * The capacity is the school's contracted bandwidth (`contractedMbps` in the registry) when it has one — what the
 * carrier sells is what saturates, whatever the port's speed (a 1 Gbit/s port on a 100 Mbit/s line is full at
 * 100) — else the uplink interface's polled speed (ifHighSpeed/ifSpeed). Other interfaces: their speed only.
 */
export type CapacitySource = 'contract' | 'polled';

export interface Capacity {
  capacityMbps: number | null;
  capacitySource: CapacitySource | null;
}

export function uplinkCapacity(
  contractedMbps: number | undefined,
  speedMbps: number | null | undefined,
): Capacity {
  if (contractedMbps !== undefined && contractedMbps > 0)
    return { capacityMbps: contractedMbps, capacitySource: 'contract' };
  if (speedMbps) return { capacityMbps: speedMbps, capacitySource: 'polled' };
  return { capacityMbps: null, capacitySource: null };
}

/** `bps` as a percentage of `capacityMbps` (unrounded); undefined when either is unknown. */
export function utilisationPct(
  bps: number | null | undefined,
  capacityMbps: number | null,
): number | undefined {
  return bps !== null && bps !== undefined && capacityMbps ? (bps / (capacityMbps * 1e6)) * 100 : undefined;
}
