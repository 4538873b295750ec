import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type Principal, ROLES, type Role } from '../common/http/principal.js';
import { FileWatch, JsonFileError, readJsonFileAs, writeFileAtomic } from '../common/json-file.js';
import { idSchema, regionPathSchema } from '../contracts/ids.js';

export { type Principal, ROLES, type Role } from '../common/http/principal.js';

/**
 * API bearer tokens. A token is 32 random bytes (base64url, prefixed `cfm_` so a leaked one is easy to grep
 * for); only its SHA-256 is stored — a slow password hash buys nothing for 256 random bits and would cost a
 * scrypt per request. Each token has a role and an optional region scope (a region path): a county bureau's
 * token sees only the schools under its county, everywhere.
 */

export const tokenRecordSchema = z.strictObject({
  id: idSchema,
  name: z.string().max(128),
  role: z.enum(ROLES),
  scope: regionPathSchema.optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
});
export type TokenRecord = z.infer<typeof tokenRecordSchema>;
const fileSchema = z.strictObject({ tokens: z.array(tokenRecordSchema) });

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The token file cannot be used: unreadable, not JSON, or a field that is wrong (named in the message). */
export class TokensFileError extends Error {
  override name = 'TokensFileError';
}

export class TokenStore {
  private byHash = new Map<string, TokenRecord>();
  private records: TokenRecord[] = [];

  constructor(
    readonly path: string,
    private readonly opts: { log?: Logger } = {},
  ) {
    this.watch = new FileWatch(path);
  }

  private readonly watch: FileWatch;

  /** How often `verify` looks whether another process changed the file. */
  get checkEveryMs(): number {
    return this.watch.checkEveryMs;
  }
  set checkEveryMs(ms: number) {
    this.watch.checkEveryMs = ms;
  }

  /** The previous version of the file, kept by every write (`tokens add`, `tokens revoke`). */
  get backupPath(): string {
    return `${this.path}.bak`;
  }

  /** Why the file could not be re-read, while it cannot (the tokens read before stay in force). */
  lastError: TokensFileError | undefined;

  /**
   * Reads the file (missing = no tokens). A malformed one throws a TokensFileError naming the file and the
   * first bad field. It is never replaced by its `.bak` automatically: that is the file before the last
   * change, and a revoked token would be valid again.
   */
  load(): this {
    this.watch.mark();
    let records: TokenRecord[];
    try {
      records = readJsonFileAs(this.path, 'tokens', fileSchema)?.tokens ?? [];
    } catch (e) {
      if (!(e instanceof JsonFileError)) throw e;
      const bak = existsSync(this.backupPath)
        ? ` (the file before the last change is ${this.backupPath}; restoring it would also undo that change)`
        : '';
      throw new TokensFileError(`${e.message}${bak}`);
    }
    this.lastError = undefined;
    return this.set(records);
  }

  private set(records: TokenRecord[]): this {
    this.records = records;
    this.byHash = new Map(records.map((r) => [r.sha256, r]));
    return this;
  }

  list(): readonly TokenRecord[] {
    return this.records;
  }

  /** Re-reads the file when another process changed it (looked at most every `checkEveryMs`). */
  check(): void {
    if (this.watch.changed()) {
      try {
        this.load();
      } catch (e) {
        // Keep the tokens we had (fail closed would lock every operator out over a typo), and say so: once per
        // change of the file, in the log and on /health.
        this.lastError = e as TokensFileError;
        this.opts.log?.error(
          { file: this.path, err: this.lastError.message },
          'tokens file unusable: keeping the tokens read before; fix the file',
        );
      }
    }
  }

  /** The principal of a presented token, or undefined. A change by `npm run api -- tokens add|revoke` in
   * another process takes effect within `checkEveryMs` (the file is re-read when it changed). */
  verify(token: string): Principal | undefined {
    this.check();
    const h = sha256(token);
    const r = this.byHash.get(h);
    // The map lookup already matched; the constant-time compare documents the intent for a reader.
    if (!r || !timingSafeEqual(Buffer.from(r.sha256), Buffer.from(h))) return undefined;
    return { tokenId: r.id, name: r.name, role: r.role, scope: r.scope };
  }

  /** Creates a token; returns the secret, which is shown once and never stored. */
  add(name: string, role: Role, scope?: string): { id: string; token: string } {
    const token = `cfm_${randomBytes(32).toString('base64url')}`;
    const id = `t${randomBytes(6).toString('hex')}`;
    const record = tokenRecordSchema.parse({
      id,
      name,
      role,
      ...(scope ? { scope } : {}),
      sha256: sha256(token),
      createdAt: new Date().toISOString(),
    });
    this.save([...this.records, record]);
    return { id, token };
  }

  revoke(id: string): boolean {
    const next = this.records.filter((r) => r.id !== id);
    if (next.length === this.records.length) return false;
    this.save(next);
    return true;
  }

  private save(records: TokenRecord[]): void {
    writeFileAtomic(this.path, `${JSON.stringify({ tokens: records }, null, 1)}\n`, 0o600, {
      backup: this.backupPath,
    });
    this.watch.mark();
    this.set(records);
  }
}
