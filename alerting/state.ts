import { z } from 'zod';
import { idSchema, regionPathSchema } from '../contracts/ids.js';
import type { DeliveryRecord } from './deliver.js';
import { type Alert, idOf, isOldId, type QueuedMessage } from './engine.js';
import type { Rendered } from './render.js';
import { RULE_NAMES, SEVERITIES } from './rules.js';

/**
 * The schemas of what the alert service keeps in its state file (`alerts.stateFile`), also used for the API's
 * responses. The file is validated field by field when it is read: a hand edit, a restore of the wrong file or
 * a disk error is reported with the file and the first bad field, never as a crash inside the engine.
 * Unknown fields are dropped (a newer version may add some); a missing list is empty (older versions wrote
 * fewer lists).
 */

/** A silence's fields; what a state file may hold (older versions allowed a device without its school). */
const silenceFields = z.strictObject({
  id: z.string(),
  createdBy: z.string(),
  comment: z.string().max(500),
  region: regionPathSchema.optional(),
  school: idSchema.optional(),
  device: idSchema.optional(),
  rule: z.enum(RULE_NAMES).optional(),
  startsAtMs: z.number(),
  endsAtMs: z.number(),
});
/** A silence in force. Device ids are unique only within a school: one naming a device names its school. */
export const silenceSchema = silenceFields.refine((x) => x.device === undefined || x.school !== undefined, {
  message: 'a silence naming a device must name its school',
});
export type Silence = z.infer<typeof silenceSchema>;

const msOrNull = z.number().nullable();

export const alertSchema = z.object({
  id: z.string(),
  key: z.string(),
  rule: z.enum(RULE_NAMES),
  severity: z.enum(SEVERITIES),
  school: z.string(),
  device: z.string().nullable(),
  subject: z.string().nullable(),
  state: z.enum(['pending', 'firing', 'resolved']),
  raw: z.boolean(),
  startedAtMs: z.number(),
  pendingSinceMs: msOrNull,
  clearSinceMs: msOrNull,
  firingAtMs: msOrNull,
  resolvedAtMs: msOrNull,
  notifiedAtMs: msOrNull,
  owedFiring: z.boolean(),
  ackedAtMs: msOrNull,
  ackedBy: z.string().nullable(),
  changes: z.array(z.number()),
  flapping: z.boolean(),
  inhibitedBy: z.string().nullable(),
  affected: z.array(z.string()),
  message: z.string(),
  details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
}) satisfies z.ZodType<Alert>;

const queuedMessageSchema = z.object({
  firstMs: z.number(),
  items: z.array(z.object({ kind: z.enum(['firing', 'resolved', 'reminder']), alert: alertSchema })),
}) satisfies z.ZodType<QueuedMessage>;

const renderedSchema = z.object({
  title: z.string(),
  markdown: z.string(),
  text: z.string(),
  severity: z.enum(SEVERITIES),
  resolvedSeverity: z.enum(SEVERITIES),
  json: z.unknown(),
}) satisfies z.ZodType<Rendered>;

export const deliveryRecordSchema = z.object({
  id: z.string(),
  channel: z.string(),
  school: z.string(),
  title: z.string(),
  createdAtMs: z.number(),
  attempts: z.number().int().min(0),
  status: z.enum(['pending', 'delivered', 'failed']),
  lastError: z.string().nullable(),
  nextAttemptAtMs: msOrNull,
  message: renderedSchema.optional(),
}) satisfies z.ZodType<DeliveryRecord>;

export const stateFileSchema = z.object({
  version: z.literal(1),
  active: z.array(alertSchema),
  history: z.array(alertSchema).default([]),
  queue: z.array(z.tuple([z.string(), queuedMessageSchema])).default([]),
  silences: z.array(silenceFields).default([]),
  deliveries: z.array(deliveryRecordSchema).default([]),
});
export type StateFile = z.infer<typeof stateFileSchema>;

/**
 * A state file written before alert ids were URL-safe (#15) holds ids `key|start`: each becomes `idOf` it —
 * the id the engine now gives that alert — wherever it appears (active alerts, history, the messages waiting
 * in the queue, and the uplink alert an inhibited one names). Keys stay as they are. A file with current ids is
 * returned unchanged. Deliveries keep the message they were rendered with.
 */
export function migrateIds(state: StateFile): StateFile {
  const id = (x: string) => (isOldId(x) ? idOf(x) : x);
  const alert = (a: Alert): Alert => ({
    ...a,
    id: id(a.id),
    inhibitedBy: a.inhibitedBy === null ? null : id(a.inhibitedBy),
  });
  return {
    ...state,
    active: state.active.map(alert),
    history: state.history.map(alert),
    queue: state.queue.map(([school, q]) => [
      school,
      { ...q, items: q.items.map((i) => ({ ...i, alert: alert(i.alert) })) },
    ]),
  };
}
