/**
 * The bounds of one registry import. A registry file comes from an operator's spreadsheet, but it is still
 * input from outside: a few hundred kilobytes of .xlsx can inflate to gigabytes, and a million rows would hold
 * the importer for minutes. Every bound is checked as early as it can be — the file's size before it is read,
 * a workbook's inflated size from its zip directory before anything is inflated (and again while inflating, in
 * case the directory lies), rows and cells as they are read — and the parse runs in a worker process whose
 * time and heap are bounded too (`import-run.ts`). The defaults fit a city registry of tens of thousands of devices
 * (a city of 2,000 schools, 40,000 classrooms and 80,000 devices is ~122,000 rows, ~1.2 M cells).
 */
export interface ImportLimits {
  /** The file as uploaded (an .xlsx compressed). */
  maxFileBytes: number;
  /** An .xlsx workbook's zip entries inflated, summed. */
  maxInflatedBytes: number;
  /** Data rows (headers not counted) in one import, all sheets and files together. */
  maxRows: number;
  /** Cells read in one import (a spreadsheet row counts up to its last cell, empty ones included). */
  maxCells: number;
  /** Wall time of the parse, merge and check in the worker (which is killed after it). */
  timeoutMs: number;
  /** The worker's JavaScript heap (`--max-old-space-size`). */
  maxHeapMb: number;
}

export const DEFAULT_IMPORT_LIMITS: Readonly<ImportLimits> = {
  maxFileBytes: 32 * 1024 * 1024,
  maxInflatedBytes: 256 * 1024 * 1024,
  maxRows: 200_000,
  maxCells: 3_000_000,
  timeoutMs: 120_000,
  maxHeapMb: 1_024,
};

/** Where each limit is configured: error messages name it, so an operator knows what to raise. */
export const LIMIT_KEYS: Record<keyof ImportLimits, string> = {
  maxFileBytes: 'api.bodyLimitBytes',
  maxInflatedBytes: 'api.import.maxInflatedBytes',
  maxRows: 'api.import.maxRows',
  maxCells: 'api.import.maxCells',
  timeoutMs: 'api.import.timeoutMs',
  maxHeapMb: 'api.import.maxHeapMb',
};

/**
 * An import refused because it exceeds a limit: 413 (too large: file, inflated size, time, memory) or 422
 * (too many rows or cells). The message names the file, the limit's configuration key and its value.
 */
export class ImportLimitError extends Error {
  override name = 'ImportLimitError';
  readonly status: 413 | 422;
  constructor(
    readonly limit: keyof ImportLimits,
    readonly value: number,
    /** What exceeded it, naming the file. */
    readonly what: string,
  ) {
    super(`${what}; the limit is ${LIMIT_KEYS[limit]} = ${value}`);
    this.status = limit === 'maxRows' || limit === 'maxCells' ? 422 : 413;
  }
}

/** Counts rows and cells as they are read, throwing the moment either exceeds its limit. */
export class RowBudget {
  rows = 0;
  cells = 0;
  constructor(readonly limits: Pick<ImportLimits, 'maxRows' | 'maxCells'>) {}

  /** `n` cells read from `file` (a header's, an empty row's: every cell costs memory and time). */
  addCells(file: string, n: number): void {
    this.cells += n;
    if (this.cells > this.limits.maxCells)
      throw new ImportLimitError(
        'maxCells',
        this.limits.maxCells,
        `${file}: more than ${this.limits.maxCells} cells in this import`,
      );
  }

  /** One data row (not a header, not an empty row) read from `file`. */
  addRow(file: string): void {
    if (++this.rows > this.limits.maxRows)
      throw new ImportLimitError(
        'maxRows',
        this.limits.maxRows,
        `${file}: more than ${this.limits.maxRows} rows in this import`,
      );
  }
}
