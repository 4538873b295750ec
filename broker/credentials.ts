import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { z } from 'zod';
import { explicitShardSchema, type Shard } from '../common/shard.js';
import { idSchema } from '../contracts/ids.js';
import type { Principal } from './acl.js';

/**
 * Per-client credentials, stored hashed with scrypt (RFC 7914) in a YAML file managed by `broker/cli.ts`.
 *
 * Hash format: `scrypt$<log2 N>$<r>$<p>$<salt, base64>$<key, base64>`; the parameters travel with each hash so
 * they can be raised later without invalidating old entries. Cost: generated secrets (192 random bits) use
 * N=2^12 — the KDF only slows guessing, and nobody guesses 192 bits — which keeps a broker restart with 30,000
 * reconnecting devices to minutes of CPU, not an hour; a human-chosen password uses N=2^14.
 */
const scrypt = promisify(scryptCb) as (
  pw: string,
  salt: Buffer,
  len: number,
  opts: object,
) => Promise<Buffer>;

export const GENERATED_SECRET_LOG2N = 12;
export const CHOSEN_PASSWORD_LOG2N = 14;
const KEY_LEN = 32;

const usernameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/, {
  message: 'must be 1-128 of A-Z a-z 0-9 _ . : @ - starting with a letter or digit',
});

/** `{school}/{device}`: one SNMP target of a poller. */
const targetSchema = z.string().refine(
  (v) => {
    const parts = v.split('/');
    return parts.length === 2 && parts.every((p) => idSchema.safeParse(p).success);
  },
  { message: 'must be {school}/{device}, both ids' },
);

const entrySchema = z.discriminatedUnion('role', [
  z.strictObject({
    username: usernameSchema,
    role: z.literal('device'),
    school: idSchema,
    device: idSchema,
    hash: z.string().startsWith('scrypt$'),
    created: z.string(),
    rotated: z.string().optional(),
  }),
  z
    .strictObject({
      username: usernameSchema,
      role: z.literal('poller'),
      // Its assignment: a list of schools, or (#17) a shard the broker derives the schools of from the
      // registry (`broker.registryFile`) with the poller's own function (common/shard.ts).
      schools: z.array(idSchema).min(1).optional(),
      shard: explicitShardSchema.optional(),
      // Optional: the poller's explicit targets. Without it the poller may publish for any device id of its
      // schools (bounded by broker.pollerMaxRetainedDevices); with it, only for these.
      devices: z.array(targetSchema).min(1).optional(),
      hash: z.string().startsWith('scrypt$'),
      created: z.string(),
      rotated: z.string().optional(),
    })
    .superRefine((e, ctx) => {
      if ((e.schools === undefined) === (e.shard === undefined))
        ctx.addIssue({
          code: 'custom',
          path: ['schools'],
          message: 'a poller has either `schools` or `shard`',
        });
      if (e.shard && e.devices)
        ctx.addIssue({
          code: 'custom',
          path: ['devices'],
          message: '`devices` needs `schools`, not `shard`',
        });
      for (const [i, d] of (e.devices ?? []).entries()) {
        if (!e.schools?.includes(d.split('/')[0]!))
          ctx.addIssue({
            code: 'custom',
            path: ['devices', i],
            message: `${d} is not in one of the poller's schools`,
          });
      }
    }),
  // Stores readings: its subscription is what admits devices after a broker restart.
  z.strictObject({
    username: usernameSchema,
    role: z.literal('collector'),
    hash: z.string().startsWith('scrypt$'),
    created: z.string(),
    rotated: z.string().optional(),
  }),
  // Subscribes like a collector but stores nothing (the API's live view and alerting).
  z.strictObject({
    username: usernameSchema,
    role: z.literal('reader'),
    hash: z.string().startsWith('scrypt$'),
    created: z.string(),
    rotated: z.string().optional(),
  }),
]);
export type CredentialEntry = z.infer<typeof entrySchema>;
const fileSchema = z.strictObject({ users: z.array(entrySchema).default([]) });

export class CredentialsError extends Error {
  override name = 'CredentialsError';
}

export async function hashSecret(secret: string, log2N = CHOSEN_PASSWORD_LOG2N): Promise<string> {
  const salt = randomBytes(16);
  const N = 2 ** log2N;
  const key = await scrypt(secret, salt, KEY_LEN, { N, r: 8, p: 1, maxmem: 256 * N * 8 });
  return `scrypt$${log2N}$8$1$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifySecret(secret: string, hash: string): Promise<boolean> {
  const parts = hash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, l, r, p, saltB64, keyB64] = parts as [string, string, string, string, string, string];
  const N = 2 ** Number(l);
  const expected = Buffer.from(keyB64, 'base64');
  if (!Number.isInteger(N) || expected.length === 0) return false;
  const key = await scrypt(secret, Buffer.from(saltB64, 'base64'), expected.length, {
    N,
    r: Number(r),
    p: Number(p),
    maxmem: 256 * N * Number(r),
  });
  return timingSafeEqual(key, expected);
}

/** A random secret for a device: 24 bytes, base64url (32 characters). */
export function generateSecret(): string {
  return randomBytes(24).toString('base64url');
}

/** The schools of a shard in the registry as it is now (the broker's, watched). */
export type ShardSchools = (shard: Shard) => readonly string[];

/**
 * The principal of a credential. A poller assigned a shard gets its schools from `shardSchools` on every look,
 * so a registry import moves a school between pollers without a reconnect; without `shardSchools`, none.
 */
export function principalOf(e: CredentialEntry, shardSchools?: ShardSchools): Principal {
  switch (e.role) {
    case 'device':
      return { role: 'device', username: e.username, school: e.school, device: e.device };
    case 'poller': {
      const shard = e.shard;
      if (shard)
        return {
          role: 'poller',
          username: e.username,
          get schools() {
            return shardSchools?.(shard) ?? [];
          },
        };
      return {
        role: 'poller',
        username: e.username,
        schools: e.schools ?? [],
        ...(e.devices ? { devices: new Set(e.devices) } : {}),
      };
    }
    case 'collector':
    case 'reader':
      return { role: e.role, username: e.username };
  }
}

/** The credentials file: load, verify, and (for the CLI) add, rotate and revoke with atomic writes. */
export class CredentialStore {
  private entries = new Map<string, CredentialEntry>();
  /** sha256(username NUL secret NUL hash) of recent successful checks, so a reconnect costs no scrypt. */
  private readonly verified = new Map<string, true>();

  constructor(
    readonly file: string,
    /** How a shard-assigned poller's schools are found (the broker's registry); absent: it has none. */
    private readonly shardSchools?: ShardSchools,
  ) {}

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        this.entries = new Map();
        return;
      }
      throw new CredentialsError(`${this.file}: cannot read: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text) ?? {};
    } catch (e) {
      throw new CredentialsError(`${this.file}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    const r = fileSchema.safeParse(doc);
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new CredentialsError(`${this.file}: ${i.path.join('.')}: ${i.message}`);
    }
    const next = new Map<string, CredentialEntry>();
    for (const [i, e] of r.data.users.entries()) {
      if (next.has(e.username))
        throw new CredentialsError(`${this.file}: users.${i}: duplicate username ${e.username}`);
      next.set(e.username, e);
    }
    this.entries = next;
    this.verified.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  list(): CredentialEntry[] {
    return [...this.entries.values()];
  }

  get(username: string): CredentialEntry | undefined {
    return this.entries.get(username);
  }

  /**
   * The principal and the hash it was checked against, for valid credentials; undefined otherwise (an unknown
   * user and a wrong secret look the same). The hash is the one read before the check, so a rotation that
   * lands during the scrypt run cannot attach the new hash to a client that proved the old secret.
   */
  async authenticate(
    username: string,
    secret: string,
  ): Promise<{ principal: Principal; hash: string } | undefined> {
    const e = this.entries.get(username);
    if (!e) {
      // Spend comparable time so an unknown user is not distinguishable by timing.
      await hashSecret(secret, GENERATED_SECRET_LOG2N);
      return undefined;
    }
    const key = createHash('sha256').update(`${username}\0${secret}\0${e.hash}`).digest('base64');
    if (this.verified.has(key)) return { principal: principalOf(e, this.shardSchools), hash: e.hash };
    if (!(await verifySecret(secret, e.hash))) return undefined;
    if (this.verified.size > 100_000) this.verified.clear();
    this.verified.set(key, true);
    return { principal: principalOf(e, this.shardSchools), hash: e.hash };
  }

  private async save(): Promise<void> {
    const doc = {
      users: [...this.entries.values()].sort((a, b) => a.username.localeCompare(b.username)),
    };
    const header =
      '# Broker credentials, managed by `npm run broker -- users …`. Hashes are scrypt; never edit by hand.\n';
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, header + toYaml(doc), { mode: 0o600 });
    await rename(tmp, this.file);
  }

  /** Adds a user; returns the secret (generated unless given). The secret is shown once and never stored. */
  async add(
    spec: { username: string } & (
      | { role: 'device'; school: string; device: string }
      | { role: 'poller'; schools: string[]; devices?: string[] }
      | { role: 'poller'; shard: { index: number; count: number; regions?: string[] } }
      | { role: 'collector' }
      | { role: 'reader' }
    ),
    secret?: string,
  ): Promise<string> {
    await this.load();
    if (this.entries.has(spec.username))
      throw new CredentialsError(`user ${spec.username} exists; use rotate`);
    const plain = secret ?? generateSecret();
    const hash = await hashSecret(plain, secret ? CHOSEN_PASSWORD_LOG2N : GENERATED_SECRET_LOG2N);
    const r = entrySchema.safeParse({ ...spec, hash, created: new Date().toISOString() });
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new CredentialsError(`user ${spec.username}: ${i.path.join('.')}: ${i.message}`);
    }
    const entry = r.data;
    this.entries.set(entry.username, entry);
    await this.save();
    return plain;
  }

  async rotate(username: string, secret?: string): Promise<string> {
    await this.load();
    const e = this.entries.get(username);
    if (!e) throw new CredentialsError(`no user ${username}`);
    const plain = secret ?? generateSecret();
    const hash = await hashSecret(plain, secret ? CHOSEN_PASSWORD_LOG2N : GENERATED_SECRET_LOG2N);
    this.entries.set(username, { ...e, hash, rotated: new Date().toISOString() });
    await this.save();
    return plain;
  }

  async revoke(username: string): Promise<void> {
    await this.load();
    if (!this.entries.delete(username)) throw new CredentialsError(`no user ${username}`);
    await this.save();
  }
}
