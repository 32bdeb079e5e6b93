import { z } from 'zod';
import { unstorableJson, unstorableText } from '../store/storable.ts';

const Uuid = z.string().uuid();

/** The largest `config`, `context` or `metadata` object an assistant keeps, as JSON text. */
export const MAX_ASSISTANT_JSON_BYTES = 64 * 1024;

/** How deep an assistant's JSON objects may nest. */
const MAX_JSON_DEPTH = 64;

/**
 * A JSON object of bounded size that Postgres can store (a 4xx here, not a 5xx
 * there): an assistant is read on every run created with it.
 */
const BoundedObject = z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
  const problem = unstorableJson(value, MAX_JSON_DEPTH);
  if (problem !== null) {
    ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path });
  } else if (Buffer.byteLength(JSON.stringify(value)) > MAX_ASSISTANT_JSON_BYTES) {
    ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_ASSISTANT_JSON_BYTES} bytes as JSON` });
  }
});

/** A string Postgres can store. */
const StorableText = (schema: z.ZodString) =>
  schema.superRefine((value, ctx) => {
    const problem = unstorableText(value);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  });

const GraphId = StorableText(z.string().min(1).max(200));
const Name = StorableText(z.string().min(1).max(200));
const Description = StorableText(z.string().max(2000));

/**
 * The LangGraph `POST /assistants` body (the SDK's `assistants.create`).
 * `null` counts as absent for the optional fields; unknown fields are ignored.
 */
export const AssistantCreateBody = z.looseObject({
  graph_id: GraphId,
  assistant_id: Uuid.optional(),
  config: BoundedObject.nullish(),
  context: BoundedObject.nullish(),
  metadata: BoundedObject.nullish(),
  if_exists: z.enum(['raise', 'do_nothing']).nullish(),
  name: Name.nullish(),
  description: Description.nullish(),
});

/**
 * The LangGraph `PATCH /assistants/{assistant_id}` body (`assistants.update`).
 * An absent (or null) field keeps its value, except `description: null`, which clears it.
 */
export const AssistantPatchBody = z.looseObject({
  graph_id: GraphId.nullish(),
  config: BoundedObject.nullish(),
  context: BoundedObject.nullish(),
  metadata: BoundedObject.nullish(),
  name: Name.nullish(),
  description: Description.nullish(),
});

/** The LangGraph `POST /assistants/{assistant_id}/versions` body (`assistants.getVersions`). */
export const AssistantVersionsBody = z.looseObject({
  metadata: BoundedObject.nullish(),
  limit: z.number().int().min(1).max(1000).default(10),
  offset: z.number().int().min(0).default(0),
});

/** The LangGraph `POST /assistants/{assistant_id}/latest` body (`assistants.setLatest`). */
export const AssistantLatestBody = z.looseObject({
  version: z.number().int().min(1).max(2_147_483_647),
});

/** The LangGraph `POST /assistants/count` body (`assistants.count`). */
export const AssistantCountBody = z.looseObject({
  graph_id: GraphId.nullish(),
  name: Name.nullish(),
  metadata: BoundedObject.nullish(),
});

/**
 * The `DELETE /assistants/{assistant_id}` query. The SDK always sends
 * `delete_threads` (default `false`); deleting the threads too is not supported.
 */
export const AssistantDeleteQuery = z.looseObject({
  delete_threads: z
    .enum(['true', 'false'])
    .optional()
    .refine((v) => v !== 'true', { message: 'deleting the threads of an assistant is not supported' }),
});

/** The `GET /assistants/{assistant_id}/graph` query: `xray` is accepted and has nothing to expand. */
export const AssistantGraphQuery = z.looseObject({
  xray: z.string().max(20).optional(),
});

export const AssistantSubgraphParams = z.object({
  assistant_id: Uuid,
  namespace: z.string().min(1).max(200),
});
