import { z } from 'zod';
import { RUN_STATUSES } from '../runs/status.ts';
import { WebhookUrl } from '../webhooks/url.ts';
import { RunLimitsOverride } from '../worker/budgets.ts';

export const Uuid = z.string().uuid();
const JsonObject = z.record(z.string(), z.unknown());

/** The largest `metadata`, `config` or `kwargs` object a request may carry, as JSON text (inputs and state values are bounded by the body limit only). */
export const MAX_FIELD_JSON_BYTES = 64 * 1024;

/** A JSON object of at most `MAX_FIELD_JSON_BYTES`: metadata is stored on every row and returned in every list. */
const SmallJsonObject = JsonObject.refine(
  (value) => Buffer.byteLength(JSON.stringify(value)) <= MAX_FIELD_JSON_BYTES,
  {
    message: `must be at most ${MAX_FIELD_JSON_BYTES / 1024} KiB as JSON`,
  },
);

/** A run's budget override is checked at create time, so a bad one is a 4xx naming the field. */
function checkRunLimits(config: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const configurable = config.configurable;
  if (typeof configurable !== 'object' || configurable === null) return;
  const limits = (configurable as Record<string, unknown>).hangar_limits;
  if (limits === undefined || limits === null) return;
  const parsed = RunLimitsOverride.safeParse(limits);
  for (const issue of parsed.error?.issues ?? []) {
    ctx.addIssue({
      code: 'custom',
      message: issue.message,
      path: ['configurable', 'hangar_limits', ...issue.path.map(String)],
    });
  }
}

export const ThreadParams = z.object({ thread_id: Uuid });
export const RunParams = z.object({ thread_id: Uuid, run_id: Uuid });

/** The LangGraph `RunCreate` body (fields Hangar does not use yet are accepted and ignored). */
export const RunCreateBody = z.looseObject({
  assistant_id: z.string().min(1).max(200),
  input: z.unknown().optional(),
  metadata: SmallJsonObject.optional(),
  /** Hangar: `configurable.hangar_limits` tightens the agent's budgets (worker/budgets.ts). */
  config: SmallJsonObject.superRefine(checkRunLimits).optional(),
  kwargs: SmallJsonObject.optional(),
  run_id: Uuid.optional(),
  multitask_strategy: z.enum(['reject', 'interrupt', 'rollback', 'enqueue']).optional(),
  if_not_exists: z.enum(['create', 'reject']).optional(),
  priority: z.number().int().min(-1000).max(1000).optional(),
  /** Hangar: runs of one key of a tenant run one at a time, or the agent's `concurrency.limit` at a time. */
  concurrency_key: z
    .string()
    .min(1)
    .max(200)
    .refine((key) => !key.includes('\u0000'), { message: 'must not contain NUL' })
    .optional(),
  /** Streaming creates only: what happens to the run when the client disconnects (default `continue`). */
  on_disconnect: z.enum(['cancel', 'continue']).optional(),
  /** POSTed the run when it ends (see docs/api.md, Webhooks). */
  webhook: WebhookUrl.optional(),
});

export const ThreadCreateBody = z.looseObject({
  thread_id: Uuid.optional(),
  metadata: SmallJsonObject.optional(),
  if_exists: z.enum(['raise', 'do_nothing']).optional(),
});

export const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(10),
});

export const AssistantParams = z.object({ assistant_id: Uuid });
export const AgentParams = z.object({ agent_id: Uuid });

const SearchPage = {
  metadata: SmallJsonObject.optional(),
  limit: z.number().int().min(1).max(1000).default(10),
  offset: z.number().int().min(0).default(0),
};

/** The LangGraph `POST /assistants/search` body (`select` and other fields are ignored). */
export const AssistantSearchBody = z.looseObject({
  graph_id: z.string().min(1).max(200).optional(),
  name: z.string().min(1).max(200).optional(),
  ...SearchPage,
  sort_by: z.enum(['assistant_id', 'graph_id', 'name', 'created_at', 'updated_at']).optional(),
  sort_order: z.enum(['asc', 'desc']).optional(),
});

/** The Agent Protocol `POST /agents/search` body. */
export const AgentSearchBody = z.looseObject({
  name: z.string().min(1).max(200).optional(),
  ...SearchPage,
});

/** The LangGraph `POST /threads/search` body (`select` and `extract` are ignored). */
export const ThreadSearchBody = z.looseObject({
  ...SearchPage,
  values: JsonObject.optional(),
  status: z.enum(['idle', 'busy', 'interrupted', 'error']).optional(),
  ids: z.array(Uuid).max(1000).optional(),
  sort_by: z.enum(['thread_id', 'status', 'created_at', 'updated_at']).optional(),
  sort_order: z.enum(['asc', 'desc']).optional(),
});

/** The LangGraph `PATCH /threads/{thread_id}` body (`ttl` is ignored). */
export const ThreadPatchBody = z.looseObject({ metadata: SmallJsonObject.default({}) });

export const ThreadCheckpointParams = z.object({ thread_id: Uuid, checkpoint_id: Uuid });

/**
 * The LangGraph `POST /threads/{thread_id}/history` body. `before` is a
 * checkpoint id, `{checkpoint_id}` or the SDK's `Config`
 * (`{configurable: {checkpoint_id}}`); `checkpoint` and `select` are ignored.
 */
export const ThreadHistoryBody = z.looseObject({
  limit: z.number().int().min(1).max(1000).default(10),
  before: z
    .union([
      Uuid,
      z.looseObject({ checkpoint_id: Uuid }),
      z.looseObject({ configurable: z.looseObject({ checkpoint_id: Uuid }) }),
    ])
    .nullish()
    .transform((b): string | undefined => {
      if (b == null || typeof b === 'string') return b ?? undefined;
      const config = b as { checkpoint_id?: string; configurable?: { checkpoint_id: string } };
      return config.checkpoint_id ?? config.configurable?.checkpoint_id;
    }),
  metadata: SmallJsonObject.nullish().transform((m) => m ?? undefined),
});

/** The LangGraph `POST /threads/{thread_id}/state` body (`checkpoint`, `checkpoint_id` are ignored). */
export const ThreadStateUpdateBody = z.looseObject({
  values: JsonObject,
  as_node: z.string().min(1).max(200).optional(),
});

/** `POST /threads/{thread_id}/runs/{run_id}/cancel` query: the SDK sends `wait` as `1`/`0`. */
export const CancelQuery = z.looseObject({
  wait: z.enum(['0', '1', 'true', 'false']).optional(),
  action: z.enum(['interrupt', 'rollback']).default('interrupt'),
});

/** `POST /runs/cancel`: runs by id (optionally on one thread), or every run of the tenant in a status. */
export const CancelManyBody = z
  .looseObject({
    thread_id: Uuid.optional(),
    run_ids: z.array(Uuid).min(1).max(1000).optional(),
    status: z.enum(['pending', 'running', 'all']).optional(),
  })
  .refine((b) => b.run_ids !== undefined || b.status !== undefined || b.thread_id !== undefined, {
    message: 'give run_ids, thread_id or status',
    path: ['run_ids'],
  });

export const CancelManyQuery = z.looseObject({
  action: z.enum(['interrupt', 'rollback']).default('interrupt'),
});

/** `cancel_on_disconnect` on join and join-stream (`1`/`0`). */
export const JoinQuery = z.looseObject({
  cancel_on_disconnect: z.enum(['0', '1', 'true', 'false']).optional(),
});

export const StatelessRunParams = z.object({ run_id: Uuid });

/** Most runs one `POST /runs/batch` creates. */
export const MAX_BATCH_RUNS = 100;
export const RunBatchBody = z.array(z.unknown()).min(1).max(MAX_BATCH_RUNS);

/** `GET /threads/{thread_id}/runs` query (`select` is ignored). */
export const RunListQuery = z.looseObject({
  limit: z.coerce.number().int().min(1).max(1000).default(10),
  offset: z.coerce.number().int().min(0).default(0),
  status: z.enum(RUN_STATUSES).optional(),
});

/** `POST /threads/count`: the filters of thread search. */
export const ThreadCountBody = z.looseObject({
  metadata: SmallJsonObject.optional(),
  values: JsonObject.optional(),
  status: z.enum(['idle', 'busy', 'interrupted', 'error']).optional(),
});

/** `POST /threads/prune`. */
export const ThreadPruneBody = z.looseObject({
  thread_ids: z.array(Uuid).min(1).max(1000),
  strategy: z.enum(['delete', 'keep_latest']).default('delete'),
});

/** `PATCH /threads/{thread_id}/state`: metadata merged into the latest checkpoint's. */
export const ThreadStatePatchBody = z.looseObject({ metadata: SmallJsonObject });

/** `POST /threads/{thread_id}/state/checkpoint` (`subgraphs`, `select` are ignored). */
export const ThreadStateAtBody = z.looseObject({
  checkpoint: z.looseObject({ checkpoint_id: Uuid }),
});
