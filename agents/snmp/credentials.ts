import { z } from 'zod';
import { CredentialsFileError, readCredentialsDocument } from '../../common/credentials-file.js';
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

/** The credentials, by name; throws CredentialsFileError naming the file and the first bad key. */
export function readCredentialsFile(path: string): Map<string, SnmpCredential> {
  const doc = readCredentialsDocument(path);
  const parsed = credentialsFileSchema.safeParse(doc);
  if (!parsed.success)
    throw new CredentialsFileError(`credentials file ${path}: ${firstIssue(parsed.error)}`);
  return new Map(Object.entries(parsed.data.snmp));
}

export { CredentialsFileError };
