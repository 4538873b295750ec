import { Gauge, type LabelValues, type Registry } from 'prom-client';

/**
 * Gauges read when `/metrics` is scraped (prom-client's `collect`), for figures a service keeps anyway (its
 * stats, the size of a map): nothing to update on the hot path, nothing that can drift from the source.
 * A gauge that is set as things happen is still a plain `new Gauge(…)`.
 */

/** A gauge without labels whose value `read` gives at each scrape. */
export function gauge(registry: Registry, name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/**
 * A gauge with one label: at each scrape, one series per key of what `read` returns (label value → number),
 * set in the order of its keys. A label value left out keeps the number it last had (prom-client keeps
 * series), so return every value a series exists for, zeros included.
 */
export function labelledGauge<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  label: L,
  read: () => Readonly<Record<string, number>>,
): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      for (const [value, n] of Object.entries(read())) this.set({ [label]: value } as LabelValues<L>, n);
    },
  });
}
