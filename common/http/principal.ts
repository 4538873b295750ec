import type { RegistryIndex } from '../registry/store.js';

/** What a request needs of the registry to resolve a region: its regions and their paths. */
export type RegionIndex = Pick<RegistryIndex, 'regions' | 'regionPath'>;

/**
 * Who is asking: the contract between the HTTP host (api/app.ts authenticates every request with a role) and
 * the route plugins of any service (api/routes/, alerting/routes.ts), which declare the roles a route allows and
 * read the caller's principal.
 *
 * | role    | may                                                                   |
 * | ------- | --------------------------------------------------------------------- |
 * | admin   | everything, including registry import                                  |
 * | ops     | fleet, live bandwidth, attainment, audit, exports, alert actions       |
 * | auditor | fleet, attainment, audit, exports (no live stream)                     |
 */
export const ROLES = ['admin', 'ops', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
  /** Region path the token is limited to; undefined = every region. */
  scope: string | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | undefined;
    /**
     * The registry's regions now, what a `?region=` is resolved against (common/http/scope.ts). The host provides
     * it on every request (api/app.ts).
     */
    regionIndex: RegionIndex;
  }
  interface FastifyContextConfig {
    /** Roles allowed; absent = a public route (health, metrics, OpenAPI). */
    roles?: readonly Role[];
  }
}
