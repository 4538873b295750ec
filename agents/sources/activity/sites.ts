import { z } from 'zod';
import { NATIONAL_PLATFORM } from '../../../common/figures/usage.js';

/**
 * Teaching sites: window-title patterns matched on the teaching computer. A browser's executable name says
 * nothing of what it shows, so the title of its window is matched here, against these patterns, and only the
 * matched site's `name` is reported (`activity.teachingSite`); the title itself never leaves the computer
 * (titles carry names of people, classes and files: docs/usage.md, "Trust").
 */
export const teachingSiteSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(64)
    .describe('What is reported when a pattern matches, e.g. `国家中小学智慧教育平台`.'),
  match: z
    .array(z.string().min(2).max(128))
    .min(1)
    .max(32)
    .describe(
      "Substrings of the window title, any of which means this site (case-insensitive; at least 2 characters). Only names on the collector's `collector.usage.teachingSites` count as teaching.",
    ),
});
export type TeachingSite = z.infer<typeof teachingSiteSchema>;

/**
 * The national platform for primary and secondary schools (国家中小学智慧教育平台, "智慧中小学"): its page title,
 * and its addresses, which a browser shows as the title of a page without one (basic.smartedu.cn today,
 * zxx.edu.cn before 2022).
 */
export const DEFAULT_TEACHING_SITES: TeachingSite[] = [
  {
    name: NATIONAL_PLATFORM,
    match: [NATIONAL_PLATFORM, '智慧中小学', 'zxx.edu.cn', 'basic.smartedu.cn'],
  },
];

export const teachingSitesSchema = z
  .array(teachingSiteSchema)
  .max(64)
  .default(DEFAULT_TEACHING_SITES)
  .describe(
    'Teaching sites, matched against the foreground window title on the computer; only the matched `name` is sent, never the title.',
  );

/** Longest title looked at: window titles are short; a longer one is cut, not refused. */
export const MAX_TITLE_CHARS = 1_024;

/** A matcher over `sites`, with patterns lower-cased once. */
export function teachingSiteMatcher(
  sites: readonly TeachingSite[],
): (title: string | undefined) => string | undefined {
  const prepared = sites.map((s) => ({ name: s.name, match: s.match.map((m) => m.toLowerCase()) }));
  return (title) => {
    if (!title) return undefined;
    const t = title.slice(0, MAX_TITLE_CHARS).toLowerCase();
    for (const s of prepared) if (s.match.some((m) => t.includes(m))) return s.name;
    return undefined;
  };
}
