import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { z } from 'zod';
import { credentialRefSchema } from '../contracts/registry.js';
import { firstIssue } from './json-file.js';

/**
 * The pollers' credentials file (docs/links.md, #17) as far as more than the poller reads it: the document, its
 * mode, and the credential names (the API checks an import's `credentialRef`s against them without reading a
 * secret). Its schema, with the secrets, is the poller's (agents/snmp/credentials.ts).
 */
export class CredentialsFileError extends Error {
  override name = 'CredentialsFileError';
}

/** The file's text parsed as YAML (or JSON); errors name the file and the line, never quote its content. */
export function readCredentialsDocument(path: string, what = 'credentials file'): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CredentialsFileError(
      `${what} ${path}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  try {
    return parseYaml(text, { uniqueKeys: true }) ?? {};
  } catch (e) {
    // The parser's message quotes the offending line, which may hold a secret: only where it is.
    const pos = (e as { linePos?: { line: number }[] }).linePos?.[0];
    throw new CredentialsFileError(
      `${what} ${path}: not valid YAML or JSON${pos ? ` (line ${pos.line})` : ''}`,
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

const isMapping = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Only the credential NAMES of the file (the API's import check): the secrets are not validated, and not kept.
 * Strict about the rest, as the poller is: throws CredentialsFileError, naming the file, when it cannot be read,
 * is no mapping, has a top-level key other than `snmp` (the names-only copy's `credentialNames:` with a sentence
 * saying which setting takes it, rather than reading as "no names" and refusing every import's names), or an
 * `snmp` that is no mapping of names. A file without `snmp:` has no credentials, as for the poller.
 */
export function readCredentialNames(path: string): string[] {
  const doc = readCredentialsDocument(path);
  if (!isMapping(doc))
    throw new CredentialsFileError(`credentials file ${path}: must be a mapping with the key snmp:`);
  if ('credentialNames' in doc)
    throw new CredentialsFileError(
      `credentials file ${path}: holds \`credentialNames:\`, the names-only copy of the pollers' credentials file: set api.credentialNamesFile to it, not api.pollerCredentialsFile`,
    );
  const unknown = Object.keys(doc).find((k) => k !== 'snmp');
  if (unknown !== undefined)
    throw new CredentialsFileError(
      `credentials file ${path}: unknown key ${JSON.stringify(unknown)} (the only key is snmp:)`,
    );
  if (doc.snmp === undefined) return [];
  if (!isMapping(doc.snmp))
    throw new CredentialsFileError(`credentials file ${path}: snmp: must be a mapping of credential names`);
  return Object.keys(doc.snmp);
}

/**
 * The names-only copy of the credentials file (`api.credentialNamesFile`; written by `npm run poller --
 * credential-names`): what the API needs to check an import's `credentialRef`s, and no secret, so the API's
 * machine never holds a community or a key.
 *
 * ```yaml
 * credentialNames: [campus-v2, campus-v3]
 * ```
 * Strict: any other key is refused, and the full credentials file (its `snmp:` mapping) with a sentence saying
 * so — a file with secrets where none should be is the operator's mistake to hear about, not to read past.
 */
export const credentialNamesFileSchema = z.strictObject({
  credentialNames: z.array(credentialRefSchema).max(100_000).describe('The credential names, no secrets.'),
});

/** The names of a names-only copy; throws CredentialsFileError naming the file and the first bad key. */
export function readCredentialNamesFile(path: string): string[] {
  const doc = readCredentialsDocument(path, 'credential names file');
  if (isMapping(doc) && 'snmp' in doc)
    throw new CredentialsFileError(
      `credential names file ${path}: holds \`snmp:\`, the pollers' full credentials file with its secrets; give the API its names-only copy (\`npm run poller -- credential-names\`), or name this file in api.pollerCredentialsFile`,
    );
  const parsed = credentialNamesFileSchema.safeParse(doc);
  if (!parsed.success)
    throw new CredentialsFileError(`credential names file ${path}: ${firstIssue(parsed.error)}`);
  return parsed.data.credentialNames;
}

/** The names-only copy as a file's text (YAML), saying where it came from; `names` are validated names. */
export function credentialNamesText(names: readonly string[], source: string): string {
  return `# The credential names of ${source.replace(/[\r\n]/g, ' ')}, without their secrets: for api.credentialNamesFile.\n# Written by \`npm run poller -- credential-names\`; write it again when a credential is added or removed.\n${toYaml({ credentialNames: [...names].sort() })}`;
}
