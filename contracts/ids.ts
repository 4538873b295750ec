import { z } from 'zod';

/**
 * One id segment: a school code, device id, classroom id, region code or collector group.
 *
 * Ids become MQTT topic levels and InfluxDB tag values, so they must never contain the MQTT wildcards `+` and
 * `#`, the level separator `/` (MQTT-4.7.1-1), a leading `$` (reserved for broker topics, MQTT-4.7.2-1), NUL
 * (MQTT-1.5.4-2) or white space. The set below (ASCII letters, digits, `_`, `.`, `-`, first character a letter or
 * digit, at most 64 characters) covers the national 10-digit school identification code (学校标识码), the
 * 6-digit administrative division codes (行政区划代码) and vendor serial numbers.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const idSchema = z.string().regex(ID_PATTERN, {
  message: 'must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit',
});

/**
 * The `region` tag of points from a (school, device) the registry does not know (an unknown school, or an unknown
 * device of a known school): no region path, so no county's filter (`region =~ /^330000\/330100\//`) and no
 * rollup sees them until the device is registered. Such points carry no `classroom` tag; `kind` is the payload's.
 * No registry may define a region with this id (contracts/registry.ts).
 */
export const UNASSIGNED_REGION = 'unassigned';

/**
 * The key of a classroom or a device: their ids are unique only within a school (a device reports under
 * `cfm/v1/{school}/{device}`), so (school, id) is the identity everywhere. `/` never occurs in an id.
 */
export function entityKey(school: string, id: string): string {
  return `${school}/${id}`;
}

export function isValidId(s: string): boolean {
  return ID_PATTERN.test(s);
}

/**
 * A region path: region ids from the top of the hierarchy down, joined by `/`, e.g. `330000/330100/330106`
 * (province / city / county). Stored as one InfluxDB tag so that a scope is a prefix match:
 * `region =~ /^330000\/330100\//`.
 */
export const REGION_PATH_PATTERN =
  /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(\/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}){0,5}$/;

export const regionPathSchema = z.string().regex(REGION_PATH_PATTERN, {
  message: 'must be 1-6 region ids joined by "/", e.g. 330000/330100/330106',
});

/** Whether `path` lies within `scope` (the scope itself or below it): whole ids only, `3301` ∌ `330106`. */
export function regionWithin(path: string, scope: string): boolean {
  return path === scope || path.startsWith(`${scope}/`);
}
