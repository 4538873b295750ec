/**
 * The key of a classroom or a device: their ids are unique only within a school (a device reports under
 * `cfm/v1/{school}/{device}`), so (school, id) is the identity everywhere. `/` never occurs in an id.
 */
export function entityKey(school: string, id: string): string {
  return `${school}/${id}`;
}

/**
 * The identity of a registry row: regions and schools by id; classrooms and devices by (school, id), because
 * their ids are unique only within a school.
 */
export function rowKey(entity: string, row: { id: string; school?: string | undefined }): string {
  return (entity === 'classrooms' || entity === 'devices') && row.school !== undefined
    ? entityKey(row.school, row.id)
    : row.id;
}
