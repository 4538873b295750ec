import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root folder. */
export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens. */
export const slug = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

/** The relative link targets of a markdown file of the repository (outside code blocks; no `https:` links). */
export function relativeLinks(file: string): string[] {
  const text = readFileSync(join(REPO, file), 'utf8').replace(/```[\s\S]*?```/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/i.test(l));
}

/** What is wrong with the relative links of `file`: a target outside the repository, missing, or a missing heading. */
export function brokenLinks(file: string): string[] {
  const broken: string[] = [];
  for (const link of relativeLinks(file)) {
    const [path, anchor] = link.split('#') as [string, string | undefined];
    const target = path ? join(dirname(join(REPO, file)), path) : join(REPO, file);
    const inside = relative(REPO, target);
    if (inside.startsWith('..') || isAbsolute(inside))
      broken.push(`${file}: ${link} is outside the repository`);
    else if (!existsSync(target)) broken.push(`${file}: ${link} does not exist`);
    else if (anchor && target.endsWith('.md')) {
      const headings = [...readFileSync(target, 'utf8').matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1]!));
      if (!headings.includes(anchor)) broken.push(`${file}: ${link} names no heading of ${inside}`);
    }
  }
  return broken;
}
