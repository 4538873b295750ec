import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { gauge, labelledGauge } from '../../common/metrics.js';

describe('collect-time gauges', () => {
  it('reads an unlabelled value at each scrape', async () => {
    const r = new Registry();
    let pending = 2;
    gauge(r, 'cfm_test_pending', 'Lines not yet written', () => pending);
    expect(await r.metrics()).toBe(
      '# HELP cfm_test_pending Lines not yet written\n# TYPE cfm_test_pending gauge\ncfm_test_pending 2\n',
    );
    pending = 5;
    expect(await r.metrics()).toContain('cfm_test_pending 5\n');
  });

  it('sets one series per key, in key order; a key left out keeps its last number', async () => {
    const r = new Registry();
    let counts: Record<string, number> = { online: 3, offline: 1 };
    labelledGauge(r, 'cfm_test_devices', 'Devices by state', 'state', () => counts);
    expect(await r.metrics()).toBe(
      [
        '# HELP cfm_test_devices Devices by state',
        '# TYPE cfm_test_devices gauge',
        'cfm_test_devices{state="online"} 3',
        'cfm_test_devices{state="offline"} 1',
        '',
      ].join('\n'),
    );
    counts = { offline: 4 };
    expect(await r.metrics()).toContain(
      'cfm_test_devices{state="online"} 3\ncfm_test_devices{state="offline"} 4',
    );
  });
});
