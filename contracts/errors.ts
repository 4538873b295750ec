/**
 * Stable error codes. A code, once published, keeps its meaning forever and is never reused; retire it instead
 * (RETIRED_ERROR_CODES). Codes appear in API error bodies (`{status: 'error', code, message}`) and in the `err`
 * of log lines. Each is documented in docs/errors.md; tests/contracts/errors.test.ts provokes every code here
 * through the function or request that raises it, checks that each is documented, and that the documents name
 * no other code.
 */
export const ERROR_CODES = {
  CFM_CONFIG_INVALID: 'A configuration file or environment override failed validation.',
  CFM_CONFIG_UNREADABLE: 'A configuration file could not be read or is not valid YAML.',
  CFM_STORAGE_UNREACHABLE: 'InfluxDB did not answer /ping.',
  CFM_STORAGE_AUTH: 'InfluxDB rejected the credentials (401) or the permission (403).',
  CFM_STORAGE_NO_DATABASE: 'The database/bucket does not exist and cannot be created.',
  CFM_STORAGE_QUERY: 'InfluxDB returned an error for an InfluxQL statement.',
  CFM_API_BAD_REQUEST: 'A request parameter or body failed validation; `field` names it.',
  CFM_API_UNAUTHENTICATED: 'No bearer token, or one the API does not know (401).',
  CFM_API_FORBIDDEN: "The token's role may not do this (403).",
  CFM_API_OUT_OF_SCOPE: "The requested region lies outside the token's region scope (403).",
  CFM_API_NOT_FOUND: 'No such route, or no such school/device within the token’s scope (404).',
  CFM_API_RATE_LIMITED: 'Too many requests for this token; retry after the Retry-After header (429).',
  CFM_API_AUTH_LIMITED:
    'Too many failed authentications from this address; retry after the Retry-After header (429). A valid token is still served.',
  CFM_API_IMPORT_REJECTED:
    'A registry import failed validation; nothing was changed; `issues` lists every error (422).',
  CFM_API_TOO_LARGE:
    'A request body, or an import file inflated, parsed or timed, exceeds a limit; the message names the limit and its value (413).',
  CFM_API_IMPORT_LIMIT:
    'A registry import has more rows or cells than allowed; nothing was changed; the message names the limit and its value (422).',
  CFM_API_IMPORT_BUSY: 'Another registry import is running; retry when it has finished (409).',
  CFM_API_UNAVAILABLE: 'A dependency (InfluxDB) did not answer; retry later (503).',
  CFM_API_INTERNAL: 'An unexpected server error; logged with the request id (500).',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Codes that were published and are no longer raised, with why: never to be used again, for anything.
 */
export const RETIRED_ERROR_CODES = {
  CFM_STORAGE_WRITE_REJECTED:
    'Never raised: points InfluxDB rejects are dropped and counted by reason (`droppedLines`: rejected, too_large, expired) and logged, not thrown.',
  CFM_TOPIC_INVALID:
    'Never raised: the collector counts a bad topic by reason (`cfm_collector_messages_rejected_total{reason}`: foreign_root, unsupported_version, bad_shape, bad_id, unknown_channel).',
  CFM_PAYLOAD_INVALID:
    'Never raised: the collector counts a bad payload by reason (`cfm_collector_messages_rejected_total{reason}`: not_json, not_object, invalid, too_large).',
} as const;

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
