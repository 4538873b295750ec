import type { z } from 'zod';
import { logConfigSchema } from './log.js';
import { influxConfigSchema } from './storage/storage.js';

/** Every configuration section, for the generated reference. A new section adds one line here. */
export const CONFIG_SECTIONS: Record<string, z.ZodType> = {
  influx: influxConfigSchema,
  log: logConfigSchema,
};
