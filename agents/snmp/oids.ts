/**
 * The OIDs the poller reads, numeric, each with its MIB name (snmp_exporter's habit: no MIB files at run time).
 * Sources: SNMPv2-MIB (RFC 3418), IF-MIB (RFC 2863).
 */
export const OID = {
  // SNMPv2-MIB::system
  sysDescr: '1.3.6.1.2.1.1.1.0', // SNMPv2-MIB::sysDescr.0
  sysUpTime: '1.3.6.1.2.1.1.3.0', // SNMPv2-MIB::sysUpTime.0 (TimeTicks, 1/100 s)
  sysName: '1.3.6.1.2.1.1.5.0', // SNMPv2-MIB::sysName.0
} as const;

/** Table columns; a row's index (ifIndex) is the last sub-identifier. */
export const COLUMN = {
  // IF-MIB::ifTable (1.3.6.1.2.1.2.2.1)
  ifDescr: '1.3.6.1.2.1.2.2.1.2', // IF-MIB::ifDescr
  ifSpeed: '1.3.6.1.2.1.2.2.1.5', // IF-MIB::ifSpeed (Gauge32, bit/s; saturates at 4,294,967,295)
  ifOperStatus: '1.3.6.1.2.1.2.2.1.8', // IF-MIB::ifOperStatus
  ifInOctets: '1.3.6.1.2.1.2.2.1.10', // IF-MIB::ifInOctets (Counter32)
  ifInDiscards: '1.3.6.1.2.1.2.2.1.13', // IF-MIB::ifInDiscards
  ifInErrors: '1.3.6.1.2.1.2.2.1.14', // IF-MIB::ifInErrors
  ifOutOctets: '1.3.6.1.2.1.2.2.1.16', // IF-MIB::ifOutOctets (Counter32)
  ifOutErrors: '1.3.6.1.2.1.2.2.1.20', // IF-MIB::ifOutErrors
  // IF-MIB::ifXTable (1.3.6.1.2.1.31.1.1.1)
  ifName: '1.3.6.1.2.1.31.1.1.1.1', // IF-MIB::ifName
  ifHCInOctets: '1.3.6.1.2.1.31.1.1.1.6', // IF-MIB::ifHCInOctets (Counter64)
  ifHCOutOctets: '1.3.6.1.2.1.31.1.1.1.10', // IF-MIB::ifHCOutOctets (Counter64)
  ifHighSpeed: '1.3.6.1.2.1.31.1.1.1.15', // IF-MIB::ifHighSpeed (Gauge32, Mbit/s)
  ifAlias: '1.3.6.1.2.1.31.1.1.1.18', // IF-MIB::ifAlias
  ifCounterDiscontinuityTime: '1.3.6.1.2.1.31.1.1.1.19', // IF-MIB::ifCounterDiscontinuityTime (TimeStamp)
} as const;
export type ColumnName = keyof typeof COLUMN;

/** IF-MIB ifOperStatus values (RFC 2863 §6). */
export const OPER_STATUS: Record<
  number,
  'up' | 'down' | 'testing' | 'unknown' | 'dormant' | 'notPresent' | 'lowerLayerDown'
> = {
  1: 'up',
  2: 'down',
  3: 'testing',
  4: 'unknown',
  5: 'dormant',
  6: 'notPresent',
  7: 'lowerLayerDown',
};
