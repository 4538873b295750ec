import { entityKey } from '../../contracts/ids.js';

/** (school, id) → the identity of a classroom or a device (contracts/ids.ts, where a parsed topic's `key` comes from). */
export { entityKey };

/**
 * The identity of a registry row: regions and schools by id; classrooms and devices by (school, id), because
 * their ids are unique only within a school.
 */
export function rowKey(entity: string, row: { id: string; school?: string | undefined }): string {
  return (entity === 'classrooms' || entity === 'devices') && row.school !== undefined
    ? entityKey(row.school, row.id)
    : row.id;
}
