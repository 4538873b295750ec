import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['./tests/global-setup.ts'],
    // Tests start real influxd/mosquitto/snmpd processes; two workers keep a 2-core machine responsive.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', './tests/summary-reporter.ts'],
    // `npm test -- --coverage` (what .ci/run does): the code that runs in production, measured in the test
    // processes (code run in the child processes some tests start is not counted). The floor is the level
    // measured when it was introduced; raise it with the tests, never lower it to get green.
    coverage: {
      provider: 'v8',
      // The TypeScript only: a README or the overview page in these folders is not code (each printed a parse
      // error in the coverage step).
      include: [
        'contracts/**/*.ts',
        'common/**/*.ts',
        'broker/**/*.ts',
        'agents/**/*.ts',
        'collector/**/*.ts',
        'alerting/**/*.ts',
        'rollup/**/*.ts',
        'api/**/*.ts',
        'dashboards/src/**/*.ts',
      ],
      reporter: ['text-summary'],
      reportsDirectory: 'var/coverage',
      // Measured 84.5 / 76.5 / 85.5 / 86.7 % when introduced (2026-12-03); 85.1 / 77.2 / 87.0 / 87.1 % once
      // alerting/ and rollup/ were services of their own (#14); 85.4 / 77.1 / 88.7 / 87.3 % with the first part of
      // #15. The floor: that, less a margin for timing-dependent paths.
      thresholds: { statements: 85.1, branches: 76.8, functions: 88, lines: 87 },
    },
  },
});
