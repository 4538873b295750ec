import { alerts } from './alerts.js';
import { audit } from './audit.js';
import type { DashboardDef } from './lib.js';
import { render } from './lib.js';
import { network } from './network.js';
import { school } from './school.js';

export * from './lib.js';

/** Every dashboard, in the order the README describes them. */
export const DASHBOARDS: readonly DashboardDef[] = [network, audit, school, alerts];

/** The committed files: `<uid>.json` → its text. */
export function renderAll(): Map<string, string> {
  return new Map(DASHBOARDS.map((d) => [`${d.uid}.json`, render(d)]));
}
