import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/**
 * The pollers' credentials file (docs/links.md, #17) as far as more than the poller reads it: the document, its
 * mode, and the credential names (the API checks an import's `credentialRef`s against them without reading a
 * secret). Its schema, with the secrets, is the poller's (agents/snmp/credentials.ts).
 */
export class CredentialsFileError extends Error {
  override name = 'CredentialsFileError';
}

/** The file's text parsed as YAML (or JSON); errors name the file and the line, never quote its content. */
export function readCredentialsDocument(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CredentialsFileError(
      `credentials file ${path}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  try {
    return parseYaml(text, { uniqueKeys: true }) ?? {};
  } catch (e) {
    // The parser's message quotes the offending line, which may hold a secret: only where it is.
    const pos = (e as { linePos?: { line: number }[] }).linePos?.[0];
    throw new CredentialsFileError(
      `credentials file ${path}: not valid YAML or JSON${pos ? ` (line ${pos.line})` : ''}`,
    );
  }
}

/**
 * Whether group or others may read the file (ssh refuses such a key; we warn): the mode bits, or undefined when
 * it cannot be looked at.
 */
export function exposedMode(path: string): number | undefined {
  try {
    const mode = statSync(path).mode & 0o777;
    return mode & 0o077 ? mode : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Only the credential NAMES of the file (the API's import check): the secrets are not validated, and not kept.
 * Throws CredentialsFileError when the file cannot be read or has no `snmp` mapping of names.
 */
export function readCredentialNames(path: string): string[] {
  const doc = readCredentialsDocument(path) as { snmp?: unknown };
  const snmp = doc && typeof doc === 'object' ? doc.snmp : undefined;
  if (snmp === undefined) return [];
  if (snmp === null || typeof snmp !== 'object' || Array.isArray(snmp))
    throw new CredentialsFileError(`credentials file ${path}: snmp: must be a mapping of credential names`);
  return Object.keys(snmp);
}
