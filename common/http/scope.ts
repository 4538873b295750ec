import type { FastifyRequest } from 'fastify';
import { regionWithin } from '../../contracts/ids.js';
import { ApiError } from './errors.js';
import type { Role } from './principal.js';

/**
 * The scope a request works in: the token's region scope, narrowed by `?region=` — which must lie within it.
 * undefined = every region (an unscoped token without `region`).
 */
export function effectiveScope(req: FastifyRequest, region: string | undefined): string | undefined {
  const own = req.principal?.scope;
  if (region === undefined) return own;
  if (own !== undefined && !regionWithin(region, own))
    throw new ApiError(
      403,
      'CFM_API_OUT_OF_SCOPE',
      `region ${region} is outside this token's scope ${own}`,
      'region',
    );
  return region;
}

export const READ_ROLES = ['admin', 'ops', 'auditor'] as const satisfies readonly Role[];
