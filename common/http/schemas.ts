import { z } from 'zod';
import { regionPathSchema } from '../../contracts/ids.js';

/** Schemas every route plugin shares, whichever service exports it (api/, alerting/). */

export const errorSchema = z
  .object({
    status: z.literal('error'),
    code: z.string(),
    message: z.string(),
    field: z.string().optional(),
    issues: z
      .array(
        z.object({
          file: z.string(),
          row: z.number().optional(),
          column: z.string().optional(),
          entity: z.string().optional(),
          message: z.string(),
        }),
      )
      .optional(),
    limit: z
      .object({ name: z.string(), value: z.number() })
      .optional()
      .describe('The limit a 413 or 422 exceeded: its configuration key and its value.'),
  })
  .describe(
    'Every error: a stable code (contracts/errors.ts), a message, and the field at fault when known.',
  );

export const ERROR_RESPONSES = {
  400: errorSchema,
  401: errorSchema,
  403: errorSchema,
  404: errorSchema,
  429: errorSchema,
  500: errorSchema,
  503: errorSchema,
} as const;

export const regionQuery = {
  region: regionPathSchema
    .optional()
    .describe(
      "Narrow to a region within the token's scope: its path (330000/330100/330127) or its bare division code (330127). A region the registry does not list is a 400.",
    ),
};
