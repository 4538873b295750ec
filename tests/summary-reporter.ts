import type { Reporter, SerializedError, TestModule } from 'vitest/node';

/**
 * Prints the plain closing line `N passed, N failed, N skipped` that CI reads, after vitest's own summary.
 *
 * `failed` counts failed tests and every error outside a test: a file that did not load, a failing
 * `beforeAll`/`afterAll` hook (its suite's tests are then reported as skipped, so counting tests alone would
 * print "0 failed" for a broken run) and unhandled errors. `skipped` is what vitest skipped, including the tests
 * of a suite whose hook failed.
 */
export function summarise(
  modules: ReadonlyArray<TestModule>,
  unhandledErrors: ReadonlyArray<SerializedError> = [],
): { passed: number; failed: number; skipped: number; hookErrors: number } {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  let hookErrors = 0;
  for (const m of modules) {
    hookErrors += m.errors().length;
    for (const s of m.children.allSuites()) hookErrors += s.errors().length;
    for (const t of m.children.allTests()) {
      const state = t.result().state;
      if (state === 'passed') passed++;
      else if (state === 'failed') failed++;
      else skipped++;
    }
  }
  hookErrors += unhandledErrors.length;
  return { passed, failed: failed + hookErrors, skipped, hookErrors };
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>): void {
    const s = summarise(modules, unhandledErrors);
    if (s.hookErrors > 0)
      process.stdout.write(`\n${s.hookErrors} failures outside tests (hooks, loading, unhandled errors)\n`);
    process.stdout.write(`\n${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped\n`);
  }
}
