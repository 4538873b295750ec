import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderTopicMap } from '../../contracts/topic-map.js';

describe('docs/topics.md', () => {
  it('is fresh (regenerate with `npm run gen:docs`)', () => {
    const committed = readFileSync(new URL('../../docs/topics.md', import.meta.url), 'utf8');
    expect(committed).toBe(renderTopicMap());
  });
});
