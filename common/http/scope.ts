import type { FastifyRequest } from 'fastify';
import { regionWithin } from '../../contracts/ids.js';
import { ApiError } from './errors.js';
import type { RegionIndex, Role } from './principal.js';

/**
 * The region path `region` names in the registry: a path as the registry has it (`330000/330100/330127`), or the
 * bare division code of one of its regions (`330127`, the code a county bureau knows), resolved to its path. Any
 * other is a 400 naming `region`: a code or path the registry does not know would otherwise match no school and
 * answer an empty list, as if the county had none.
 */
export function regionPathOf(index: RegionIndex, region: string): string {
  const parts = region.split('/');
  const id = parts[parts.length - 1]!;
  const path = index.regions.has(id) ? index.regionPath(id) : undefined;
  if (path !== undefined && (parts.length === 1 || path === region)) return path;
  throw new ApiError(
    400,
    'CFM_API_BAD_REQUEST',
    parts.length === 1 || path === undefined
      ? `region ${region} is not in the registry: give the division code (行政区划代码) of a region it lists, e.g. 330106, or its path, e.g. 330000/330100/330106`
      : `region ${region} is not a path of the registry: region ${id} lies at ${path}`,
    'region',
  );
}

/**
 * The scope a request works in: the token's region scope, narrowed by `?region=` — a region path or a bare
 * division code (`regionPathOf`), which must lie within it.
 * undefined = every region (an unscoped token without `region`).
 */
export function effectiveScope(req: FastifyRequest, region: string | undefined): string | undefined {
  const own = req.principal?.scope;
  if (region === undefined) return own;
  const path = regionPathOf(req.regionIndex, region);
  if (own !== undefined && !regionWithin(path, own))
    throw new ApiError(
      403,
      'CFM_API_OUT_OF_SCOPE',
      `region ${path === region ? region : `${region} (${path})`} is outside this token's scope ${own}`,
      'region',
    );
  return path;
}

export const READ_ROLES = ['admin', 'ops', 'auditor'] as const satisfies readonly Role[];
