import { z } from 'zod';
import { regionPathSchema, regionWithin } from '../contracts/ids.js';
import { fnv1a } from './hash.js';

/**
 * Which schools one of several pollers serves: those within one of `regions` (when given), then those whose id
 * hashes to `index` of `count`. One function for every process that must agree on it: the poller deriving its
 * targets, and (#17) the broker deriving a poller credential's schools from the same shard.
 */
const shardObject = z.strictObject({
  index: z.number().int().min(0).default(0),
  count: z.number().int().min(1).default(1),
  regions: z
    .array(regionPathSchema)
    .min(1)
    .optional()
    .describe('Poll only targets whose `region` lies within one of these region paths (then index/count).'),
});
const belowCount = (s: { index: number; count: number }) => s.index < s.count;
const belowCountError = () => ({ message: 'index must be < count', path: ['index'] });

/** A shard given explicitly (a broker credential's assignment): no default. */
export const explicitShardSchema = shardObject.refine(belowCount, belowCountError());

/** The poller's `shard`: absent means all schools (index 0 of 1). */
export const shardSchema = shardObject
  .prefault({})
  .refine(belowCount, belowCountError())
  .describe(
    'Which targets this instance polls: by region, and/or the schools whose id hashes to `index` of `count`.',
  );
export type Shard = z.output<typeof shardSchema>;

/** Stable shard of a school id (FNV-1a): a school stays with one poller, and its rate state with it. */
export function shardOf(school: string, count: number): number {
  return fnv1a(school) % count;
}

/** Whether a school (with its region path) is in `shard`: within one of `regions` (when given), and hashed to `index`. */
export function inShard(item: { school: string; region?: string | undefined }, shard: Shard): boolean {
  if (shard.regions && !shard.regions.some((r) => item.region !== undefined && regionWithin(item.region, r)))
    return false;
  return shardOf(item.school, shard.count) === shard.index;
}
