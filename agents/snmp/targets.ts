import type { RegistryIndex } from '../../common/registry/store.js';
import { inShard, type Shard } from '../../common/shard.js';
import { isNetworkKind, type NETWORK_KINDS } from '../../contracts/registry.js';
import type { SnmpTarget } from './client.js';
import type { SnmpCredential } from './credentials.js';
import type { ProbeTarget } from './probe.js';

/**
 * The poller's targets derived from the fleet registry (docs/links.md, #17): pure — the registry, the
 * credentials and the shard in, targets and the reasons for every device left out back. The poller calls it at
 * start and whenever either file changes.
 *
 * A device is polled when it is a router or switch with `mgmtAddress` and `credentialRef`, and it is its
 * school's `uplinkDevice` (the school's `uplinkInterface` is the interface the poll marks as the uplink). Its
 * `snmpVersion` (default 2c) must be its credential's; its `snmpPort`, when given, replaces the default port. The school's region chain gives the target's region, and
 * the shard decides by (school, region) as it does for configured targets.
 */

/** What every registry-derived target gets that the registry does not say (`poller.registryTargets`). */
export interface RegistryTargetDefaults {
  port: number;
  intervalS: number;
  timeoutMs: number;
  retries: number;
  maxRepetitions: number;
}

export type SkipReason =
  /** Its `credentialRef` is not in the credentials file (or there is no credentials file). */
  | 'unknown-credential'
  /** Its `snmpVersion` is not its credential's version. */
  | 'version-mismatch'
  /** No school names it as `uplinkDevice`: nothing to mark as the uplink. */
  | 'not-uplink'
  /** Its school names it as `uplinkDevice` but gives no `uplinkInterface`. */
  | 'no-uplink-interface';

export interface SkippedDevice {
  school: string;
  device: string;
  /** 1-based position in the registry's `devices` list (the registry file's row). */
  row: number;
  reason: SkipReason;
  /** For people: says which field and what it names, never a secret. */
  message: string;
}

export interface Derivation {
  /** In registry order, within the shard; `row`: 1-based position in the registry's `devices` list. */
  targets: { target: SnmpTarget; row: number }[];
  /** Devices of the shard that have `mgmtAddress` and `credentialRef` but are not polled, and why. */
  skipped: SkippedDevice[];
}

/** The SNMP targets of `shard` from the registry. `credentials` undefined: no credentials file (all skipped). */
export function deriveTargets(
  registry: RegistryIndex,
  credentials: ReadonlyMap<string, SnmpCredential> | undefined,
  shard: Shard,
  defaults: RegistryTargetDefaults,
): Derivation {
  const targets: Derivation['targets'] = [];
  const skipped: SkippedDevice[] = [];
  for (const [i, d] of registry.data.devices.entries()) {
    if (d.kind !== 'router' && d.kind !== 'switch') continue;
    if (d.mgmtAddress === undefined || d.credentialRef === undefined) continue;
    const school = registry.schools.get(d.school);
    if (!school) continue; // the merge refuses this; a hand-edited file is checked on load
    const region = registry.regionPath(school.region);
    if (!inShard({ school: d.school, region }, shard)) continue;
    const credential = credentials?.get(d.credentialRef);
    const version = d.snmpVersion ?? '2c';
    const why = ((): [SkipReason, string] | undefined => {
      if (school.uplinkDevice !== d.id)
        return ['not-uplink', `school ${d.school} does not name it as its uplinkDevice`];
      if (school.uplinkInterface === undefined)
        return [
          'no-uplink-interface',
          `school ${d.school} names it as uplinkDevice but has no uplinkInterface`,
        ];
      if (!credential)
        return [
          'unknown-credential',
          credentials
            ? `credentialRef ${d.credentialRef} is not in the credentials file`
            : `credentialRef ${d.credentialRef}: no poller.credentialsFile is configured`,
        ];
      if (credential.version !== version)
        return [
          'version-mismatch',
          `snmpVersion ${version}, but credential ${d.credentialRef} is for SNMP v${credential.version}`,
        ];
      return undefined;
    })();
    if (why || !credential || school.uplinkInterface === undefined) {
      if (why) skipped.push({ school: d.school, device: d.id, row: i + 1, reason: why[0], message: why[1] });
      continue;
    }
    const base = {
      device: d.id,
      school: d.school,
      region,
      kind: d.kind,
      address: d.mgmtAddress,
      uplink: school.uplinkInterface,
      ...defaults,
      port: d.snmpPort ?? defaults.port,
    };
    if (credential.version === '2c')
      targets.push({ target: { ...base, version: '2c', community: credential.community }, row: i + 1 });
    else {
      const { version: _v, ...v3 } = credential;
      targets.push({ target: { ...base, version: '3', v3 }, row: i + 1 });
    }
  }
  return { targets, skipped };
}

/**
 * One probe target (probe.ts, #17) per school of `shard` whose `uplinkDevice` is a registered router, switch or
 * AP with a `probeAddress` or `mgmtAddress` (the probe address first): the results are published under that
 * device, by its `probeMethod` — ICMP unless it says tcp, then a TCP connect to its `probePort`.
 */
export function probeTargets(registry: RegistryIndex, shard: Shard): ProbeTarget[] {
  const out: ProbeTarget[] = [];
  for (const s of registry.data.schools) {
    if (s.uplinkDevice === undefined) continue;
    const d = registry.device(s.id, s.uplinkDevice);
    const address = d?.probeAddress ?? d?.mgmtAddress;
    if (!d || address === undefined || !isNetworkKind(d.kind)) continue;
    const region = registry.regionPath(s.region);
    if (!inShard({ school: s.id, region }, shard)) continue;
    out.push({
      school: s.id,
      device: s.uplinkDevice,
      region,
      address,
      ...(d.probeMethod === 'tcp' && d.probePort !== undefined
        ? { method: 'tcp' as const, port: d.probePort }
        : { method: 'icmp' as const }),
      kind: d.kind as (typeof NETWORK_KINDS)[number],
    });
  }
  return out;
}
