import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { FileWatch, readJsonFile, writeFileAtomic } from '../common/json-file.js';
import { idSchema, regionPathSchema } from '../contracts/ids.js';

/**
 * API bearer tokens. A token is 32 random bytes (base64url, prefixed `cfm_` so a leaked one is easy to grep
 * for); only its SHA-256 is stored — a slow password hash buys nothing for 256 random bits and would cost a
 * scrypt per request. Each token has a role and an optional region scope (a region path): a county bureau's
 * token sees only the schools under its county, everywhere.
 *
 * | role    | may                                                                   |
 * | ------- | --------------------------------------------------------------------- |
 * | admin   | everything, including registry import                                  |
 * | ops     | fleet, live bandwidth, attainment, audit, exports                      |
 * | auditor | fleet, attainment, audit, exports (no live stream)                     |
 */
export const ROLES = ['admin', 'ops', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

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

export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
  /** Region path the token is limited to; undefined = every region. */
  scope: string | undefined;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export class TokenStore {
  private byHash = new Map<string, TokenRecord>();
  private records: TokenRecord[] = [];

  constructor(readonly path: string) {
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

  /** Reads the file (missing = no tokens); a malformed file throws naming the file and the key. */
  load(): this {
    this.watch.mark();
    const json = readJsonFile(this.path, 'tokens');
    if (json === undefined) return this.set([]);
    const parsed = fileSchema.safeParse(json);
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new Error(`tokens ${this.path}: ${i.path.join('.')}: ${i.message}`);
    }
    return this.set(parsed.data.tokens);
  }

  private set(records: TokenRecord[]): this {
    this.records = records;
    this.byHash = new Map(records.map((r) => [r.sha256, r]));
    return this;
  }

  list(): readonly TokenRecord[] {
    return this.records;
  }

  /** The principal of a presented token, or undefined. A revocation by `npm run api -- tokens revoke` in
   * another process takes effect within `checkEveryMs` (the file is re-read when it changed). */
  verify(token: string): Principal | undefined {
    if (this.watch.changed()) {
      try {
        this.load();
      } catch {
        // keep the tokens we had; the file was broken by hand
      }
    }
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
    writeFileAtomic(this.path, `${JSON.stringify({ tokens: records }, null, 1)}\n`, 0o600);
    this.watch.mark();
    this.set(records);
  }
}
