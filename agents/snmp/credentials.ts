import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { firstIssue } from '../../common/json-file.js';
import { secret } from '../../common/redact.js';
import { credentialRefSchema } from '../../contracts/registry.js';
import { v3Schema } from './client.js';

/**
 * The pollers' credentials file (`poller.credentialsFile`, docs/links.md): the SNMP credentials the registry's
 * devices name by `credentialRef`, so the registry, its imports and exports never hold a community or a key.
 *
 * ```yaml
 * snmp:
 *   campus-v2: { version: '2c', community: '…' }
 *   campus-v3: { version: '3', user: cfm, authProtocol: sha256, authKey: '…', privProtocol: aes, privKey: '…' }
 * ```
 * YAML or JSON (JSON is YAML). Every secret is marked (`secret()`), so nothing prints it; an error names the
 * file and the key, never a value.
 */
const v2cCredentialSchema = z.strictObject({
  version: z.literal('2c'),
  community: secret(z.string().min(1)).describe('v2c community.'),
});
const v3CredentialSchema = z
  .strictObject({ version: z.literal('3'), ...v3Schema.shape })
  .refine((c) => c.level !== 'authPriv' || c.privKey !== undefined, {
    message: 'authPriv needs `privKey`',
    path: ['privKey'],
  });
export const snmpCredentialSchema = z.discriminatedUnion('version', [
  v2cCredentialSchema,
  v3CredentialSchema,
]);
export type SnmpCredential = z.output<typeof snmpCredentialSchema>;

export const credentialsFileSchema = z.strictObject({
  snmp: z.record(credentialRefSchema, snmpCredentialSchema).default({}),
});
export type CredentialsFile = z.output<typeof credentialsFileSchema>;

export class CredentialsFileError extends Error {
  override name = 'CredentialsFileError';
}

/** The file's text parsed as YAML (or JSON); errors name the file and the line, never quote its content. */
function readDocument(path: string): unknown {
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

/** The credentials, by name; throws CredentialsFileError naming the file and the first bad key. */
export function readCredentialsFile(path: string): Map<string, SnmpCredential> {
  const doc = readDocument(path);
  const parsed = credentialsFileSchema.safeParse(doc);
  if (!parsed.success)
    throw new CredentialsFileError(`credentials file ${path}: ${firstIssue(parsed.error)}`);
  return new Map(Object.entries(parsed.data.snmp));
}

/**
 * Only the credential NAMES of the file (the API's import check): the secrets are not validated, and not kept.
 * Throws CredentialsFileError when the file cannot be read or has no `snmp` mapping of names.
 */
export function readCredentialNames(path: string): string[] {
  const doc = readDocument(path) as { snmp?: unknown };
  const snmp = doc && typeof doc === 'object' ? doc.snmp : undefined;
  if (snmp === undefined) return [];
  if (snmp === null || typeof snmp !== 'object' || Array.isArray(snmp))
    throw new CredentialsFileError(`credentials file ${path}: snmp: must be a mapping of credential names`);
  return Object.keys(snmp);
}
