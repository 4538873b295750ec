import { LABELS, type LabelTable, labelOf } from '../../contracts/labels.js';

/** The Chinese label of a stable code, from the one table the report files use too (contracts/labels.ts). */
export const label = (table: LabelTable, code: string | null | undefined): string =>
  code === null || code === undefined ? '—' : labelOf(table, code);

export { LABELS };
