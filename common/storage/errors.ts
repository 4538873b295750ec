import { CodedError } from '../../contracts/errors.js';

/**
 * What the storage throws, or hands to `onFatal`, when InfluxDB cannot be used: `CFM_STORAGE_UNREACHABLE`,
 * `CFM_STORAGE_AUTH`, `CFM_STORAGE_NO_DATABASE`, `CFM_STORAGE_QUERY` (contracts/errors.ts).
 */
export class StorageError extends CodedError {}
