/**
 * The key of a classroom or a device: their ids are unique only within a school (a device reports under
 * `cfm/v1/{school}/{device}`), so (school, id) is the identity everywhere. `/` never occurs in an id.
 */
export function entityKey(school: string, id: string): string {
  return `${school}/${id}`;
}
