/**
 * Stable error codes. A code, once published, keeps its meaning forever and is never reused; retire it instead.
 * Codes appear in API error bodies (`{status: 'error', code, message}`), logs and metrics labels.
 */
export const ERROR_CODES = {
  CFM_CONFIG_INVALID: 'A configuration file or environment override failed validation.',
  CFM_CONFIG_UNREADABLE: 'A configuration file could not be read or is not valid YAML.',
  CFM_STORAGE_UNREACHABLE: 'InfluxDB did not answer /ping.',
  CFM_STORAGE_AUTH: 'InfluxDB rejected the credentials (401) or the permission (403).',
  CFM_STORAGE_NO_DATABASE: 'The database/bucket does not exist and cannot be created.',
  CFM_STORAGE_QUERY: 'InfluxDB returned an error for an InfluxQL statement.',
  CFM_STORAGE_WRITE_REJECTED:
    'InfluxDB rejected points (4xx other than 401/403/413); they were dropped and counted.',
  CFM_TOPIC_INVALID: 'An MQTT topic does not follow the cfm/v1 grammar.',
  CFM_PAYLOAD_INVALID: 'An MQTT payload failed schema validation.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error that carries a stable code. */
export class CodedError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CodedError';
  }
}
