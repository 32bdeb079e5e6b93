import { z } from 'zod';
import {
  AssistantCountBody,
  AssistantCreateBody,
  AssistantDeleteQuery,
  AssistantGraphQuery,
  AssistantLatestBody,
  AssistantPatchBody,
  AssistantSubgraphParams,
  AssistantVersionsBody,
} from '../assistants/schemas.ts';
import type { ErrorCode } from '../errors.ts';
import { StreamModeParam } from '../streaming/langgraph.ts';
import { EventStreamRequest } from '../streaming/protocol.ts';
import { routeAccess } from './auth.ts';
import { ApprovalAnswerBody, ApprovalListQuery, ApprovalParams } from './routes/approvals.ts';
import { DeadLetterListQuery, DeadLetterParams, RedriveBody } from './routes/dead-letters.ts';
import { ThreadEventBody } from './routes/signals.ts';
import {
  StoreDeleteBody,
  StoreGetQuery,
  StoreNamespacesBody,
  StorePutBody,
  StoreSearchBody,
} from './routes/store.ts';
import {
  AgentParams,
  AgentSearchBody,
  AssistantParams,
  AssistantSearchBody,
  CancelManyBody,
  CancelManyQuery,
  CancelQuery,
  JoinQuery,
  ListQuery,
  MAX_BATCH_RUNS,
  RunCreateBody,
  RunListQuery,
  RunParams,
  StatelessRunParams,
  ThreadCheckpointParams,
  ThreadCountBody,
  ThreadCreateBody,
  ThreadHistoryBody,
  ThreadParams,
  ThreadPatchBody,
  ThreadPruneBody,
  ThreadSearchBody,
  ThreadStateAtBody,
  ThreadStatePatchBody,
  ThreadStateUpdateBody,
} from './schemas.ts';

/**
 * The operation catalog: one entry per route the gateway serves, naming the
 * same zod schemas the handler validates with. `/openapi.json` is generated
 * from it, `openapi.test.ts` fails when a route and the catalog disagree, and
 * the bad-input fuzz suite drives every entry.
 */
export interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The Fastify path (`/threads/:thread_id`). */
  path: string;
  operationId: string;
  summary: string;
  tag: Tag;
  params?: z.ZodObject;
  query?: z.ZodObject;
  /** A component name and the schema the handler parses the body with. */
  body?: { name: string; schema: z.ZodType; required: boolean };
  headers?: readonly HeaderParam[];
  /** The success answer. */
  ok: Success;
  /** Other success answers (cancel: `202` at once, `204` after waiting). */
  alsoOk?: readonly Success[];
  /** Error codes beyond the ones every operation of its kind can answer (see `errorCodesOf`). */
  errors?: readonly ErrorCode[];
}

export type Tag =
  | 'runs'
  | 'threads'
  | 'assistants'
  | 'agents'
  | 'store'
  | 'approvals'
  | 'dead-letters'
  | 'meta';

export interface Success {
  /** `101`: a WebSocket upgrade. */
  status: 101 | 200 | 202 | 204;
  description: string;
  /** `json` is any JSON value (a count, an item or `null`). */
  kind: 'json' | 'json-object' | 'json-array' | 'sse' | 'html' | 'none' | 'asset';
}

export interface HeaderParam {
  name: string;
  description: string;
  schema: Record<string, unknown>;
}

const IDEMPOTENCY_KEY: HeaderParam = {
  name: 'Idempotency-Key',
  description:
    'Makes the create safe to retry: the same key and body answer the original run; a different body is a 422, a first request still in flight a 409.',
  schema: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7E]+$' },
};
const LAST_EVENT_ID: HeaderParam = {
  name: 'Last-Event-ID',
  description: 'Resume after this event id (the thread sequence number of the last event received).',
  schema: { type: 'string', pattern: '^\\d{1,15}$' },
};

/** The run-create body as the create routes read it: `RunCreateBody` plus `stream_mode`. */
const RunCreateWithModes = RunCreateBody.extend({ stream_mode: StreamModeParam.optional() });
/** The query of the join-stream routes: `JoinQuery`, plus fields the handler reads one by one. */
const RunStreamQuery = JoinQuery.extend({
  stream_mode: StreamModeParam.optional(),
  last_event_id: z
    .string()
    .regex(/^\d{1,15}$/)
    .optional(),
});
/** The docs assets the gateway serves from `swagger-ui-dist` (see openapi.ts), plus its own initializer. */
export const DOCS_ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'init.js': 'text/javascript; charset=utf-8',
};
export const DocsAssetParams = z.object({ file: z.enum(Object.keys(DOCS_ASSETS) as [string, ...string[]]) });

const runCreate = (required: boolean) => ({ name: 'RunCreate', schema: RunCreateWithModes, required });
/** `POST /runs/batch`: each element is parsed as a run create (errors name its index). */
const RunBatch = z.array(RunCreateWithModes).min(1).max(MAX_BATCH_RUNS);
const RUN_CREATE_ERRORS: readonly ErrorCode[] = [
  'agent_not_found',
  'input_invalid',
  'conflict',
  'idempotency_key_reused',
];

/** Every route of the gateway. Keep in step with the `register*Routes` functions (openapi.test.ts checks). */
export const OPERATIONS: readonly Operation[] = [
  // Runs.
  {
    method: 'POST',
    path: '/runs',
    operationId: 'createStatelessRun',
    summary: 'Create a background run on a new thread; answers at once with the pending run',
    tag: 'runs',
    body: runCreate(true),
    headers: [IDEMPOTENCY_KEY],
    ok: { status: 200, description: 'The pending run.', kind: 'json-object' },
    errors: RUN_CREATE_ERRORS,
  },
  {
    method: 'POST',
    path: '/runs/wait',
    operationId: 'waitStatelessRun',
    summary: 'Create a run on a new thread and answer with its result when it ends',
    tag: 'runs',
    body: runCreate(true),
    headers: [IDEMPOTENCY_KEY],
    ok: {
      status: 200,
      description: 'The run result (thread values or output, or `__error__`).',
      kind: 'json-object',
    },
    errors: RUN_CREATE_ERRORS,
  },
  {
    method: 'POST',
    path: '/runs/stream',
    operationId: 'streamStatelessRun',
    summary: 'Create a run on a new thread and stream its events (LangGraph SSE)',
    tag: 'runs',
    body: runCreate(true),
    headers: [IDEMPOTENCY_KEY],
    ok: { status: 200, description: 'The run events as Server-Sent Events.', kind: 'sse' },
    errors: RUN_CREATE_ERRORS,
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/runs',
    operationId: 'createRun',
    summary: 'Create a background run on a thread; answers at once with the pending run',
    tag: 'runs',
    params: ThreadParams,
    body: runCreate(true),
    headers: [IDEMPOTENCY_KEY],
    ok: { status: 200, description: 'The pending run.', kind: 'json-object' },
    errors: [...RUN_CREATE_ERRORS, 'not_found'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/runs/wait',
    operationId: 'waitRun',
    summary: 'Create a run on a thread and answer with its result when it ends',
    tag: 'runs',
    params: ThreadParams,
    body: runCreate(true),
    headers: [IDEMPOTENCY_KEY],
    ok: {
      status: 200,
      description: 'The run result (thread values or output, or `__error__`).',
      kind: 'json-object',
    },
    errors: [...RUN_CREATE_ERRORS, 'not_found'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/runs/stream',
    operationId: 'streamRun',
    summary: 'Create a run on a thread and stream its events (LangGraph SSE)',
    tag: 'runs',
    params: ThreadParams,
    body: runCreate(true),
    headers: [IDEMPOTENCY_KEY],
    ok: { status: 200, description: 'The run events as Server-Sent Events.', kind: 'sse' },
    errors: [...RUN_CREATE_ERRORS, 'not_found'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/runs',
    operationId: 'listRuns',
    summary: "The thread's runs, newest first (optionally of one status)",
    tag: 'runs',
    params: ThreadParams,
    query: RunListQuery,
    ok: { status: 200, description: 'The runs.', kind: 'json-array' },
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/runs/:run_id',
    operationId: 'getRun',
    summary: 'One run',
    tag: 'runs',
    params: RunParams,
    ok: { status: 200, description: 'The run.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/runs/:run_id/stream',
    operationId: 'joinRunStream',
    summary: "Stream a run's events until it ends, resuming after Last-Event-ID",
    tag: 'runs',
    params: RunParams,
    query: RunStreamQuery,
    headers: [LAST_EVENT_ID],
    ok: { status: 200, description: 'The run events as Server-Sent Events.', kind: 'sse' },
    errors: ['not_found'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/runs/:run_id/join',
    operationId: 'joinRun',
    summary: 'Wait for a run to end and answer with its result',
    tag: 'runs',
    params: RunParams,
    query: JoinQuery,
    ok: {
      status: 200,
      description: 'The run result (thread values or output, or `__error__`).',
      kind: 'json-object',
    },
    errors: ['not_found'],
  },
  {
    method: 'GET',
    path: '/runs/:run_id/stream',
    operationId: 'joinStatelessRunStream',
    summary: "Stream a run's events by run id alone, resuming after Last-Event-ID",
    tag: 'runs',
    params: StatelessRunParams,
    query: RunStreamQuery,
    headers: [LAST_EVENT_ID],
    ok: { status: 200, description: 'The run events as Server-Sent Events.', kind: 'sse' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/stream',
    operationId: 'openThreadSseStream',
    summary:
      "The thread's events as Agent Protocol SSE: a filtered subscription (channels, namespaces, depth) from `since` or Last-Event-ID, outliving runs",
    tag: 'threads',
    params: ThreadParams,
    body: { name: 'EventStreamRequest', schema: EventStreamRequest, required: true },
    headers: [LAST_EVENT_ID],
    ok: { status: 200, description: 'Agent Protocol events as Server-Sent Events.', kind: 'sse' },
    errors: ['not_found', 'unavailable'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/stream',
    operationId: 'openThreadWebSocket',
    summary:
      'Upgrade to the Agent Protocol thread WebSocket: in-band commands (subscription.*, run.start, input.respond) and events (docs/streaming.md)',
    tag: 'threads',
    params: ThreadParams,
    ok: {
      status: 101,
      description:
        'Switching Protocols: the socket speaks the Agent Protocol framing (subprotocol `hangar.v1`).',
      kind: 'none',
    },
    errors: ['not_found', 'unavailable'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/runs/:run_id/cancel',
    operationId: 'cancelRun',
    summary: 'Cancel a run (action interrupt or rollback); wait=1 answers once it has ended',
    tag: 'runs',
    params: RunParams,
    query: CancelQuery,
    ok: {
      status: 202,
      description: 'Cancellation requested: `{run_id, thread_id, outcome}`.',
      kind: 'json-object',
    },
    alsoOk: [{ status: 204, description: 'With `wait=1`: the run has ended.', kind: 'none' }],
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/runs/cancel',
    operationId: 'cancelRuns',
    summary: "Cancel runs by id, every run of a thread, or the tenant's pending/running runs",
    tag: 'runs',
    query: CancelManyQuery,
    body: { name: 'RunCancelMany', schema: CancelManyBody, required: false },
    ok: { status: 204, description: 'Cancellation requested for every matching run.', kind: 'none' },
    errors: ['not_found'],
  },
  {
    method: 'DELETE',
    path: '/threads/:thread_id/runs/:run_id',
    operationId: 'deleteRun',
    summary: 'Delete a finished run',
    tag: 'runs',
    params: RunParams,
    ok: { status: 204, description: 'Deleted.', kind: 'none' },
    errors: ['not_found', 'conflict'],
  },
  {
    method: 'POST',
    path: '/runs/batch',
    operationId: 'createRunBatch',
    summary: 'Create stateless background runs, all or none',
    tag: 'runs',
    body: { name: 'RunBatch', schema: RunBatch, required: true },
    ok: { status: 200, description: 'The pending runs.', kind: 'json-array' },
    errors: ['agent_not_found', 'input_invalid', 'conflict'],
  },
  // Threads.
  {
    method: 'POST',
    path: '/threads',
    operationId: 'createThread',
    summary: 'Create a thread',
    tag: 'threads',
    body: { name: 'ThreadCreate', schema: ThreadCreateBody, required: false },
    ok: { status: 200, description: 'The thread.', kind: 'json-object' },
    errors: ['conflict'],
  },
  {
    method: 'POST',
    path: '/threads/search',
    operationId: 'searchThreads',
    summary: 'Threads matching metadata, values, status or ids',
    tag: 'threads',
    body: { name: 'ThreadSearch', schema: ThreadSearchBody, required: false },
    ok: { status: 200, description: 'The threads.', kind: 'json-array' },
  },
  {
    method: 'POST',
    path: '/threads/count',
    operationId: 'countThreads',
    summary: 'How many threads match metadata, values, status',
    tag: 'threads',
    body: { name: 'ThreadCount', schema: ThreadCountBody, required: false },
    ok: { status: 200, description: 'A bare integer.', kind: 'json' },
  },
  {
    method: 'POST',
    path: '/threads/prune',
    operationId: 'pruneThreads',
    summary: 'Delete threads (skipping busy ones), or keep only their latest checkpoint',
    tag: 'threads',
    body: { name: 'ThreadPrune', schema: ThreadPruneBody, required: true },
    ok: { status: 200, description: '`{pruned_count}`.', kind: 'json-object' },
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/state/checkpoint',
    operationId: 'getThreadStateAtCheckpointObject',
    summary: "The thread's state at the checkpoint named in the body",
    tag: 'threads',
    params: ThreadParams,
    body: { name: 'ThreadStateAt', schema: ThreadStateAtBody, required: true },
    ok: { status: 200, description: 'A ThreadState.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'PATCH',
    path: '/threads/:thread_id/state',
    operationId: 'patchThreadState',
    summary: "Merge metadata into the thread's latest checkpoint",
    tag: 'threads',
    params: ThreadParams,
    body: { name: 'ThreadStatePatch', schema: ThreadStatePatchBody, required: true },
    ok: { status: 204, description: 'Patched.', kind: 'none' },
    errors: ['not_found'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id',
    operationId: 'getThread',
    summary: 'One thread (status, metadata, values)',
    tag: 'threads',
    params: ThreadParams,
    ok: { status: 200, description: 'The thread.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'PATCH',
    path: '/threads/:thread_id',
    operationId: 'patchThread',
    summary: "Merge metadata into the thread's metadata",
    tag: 'threads',
    params: ThreadParams,
    body: { name: 'ThreadPatch', schema: ThreadPatchBody, required: false },
    ok: { status: 200, description: 'The thread.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'DELETE',
    path: '/threads/:thread_id',
    operationId: 'deleteThread',
    summary: 'Delete the thread with its runs, events and state history',
    tag: 'threads',
    params: ThreadParams,
    ok: { status: 204, description: 'Deleted.', kind: 'none' },
    errors: ['not_found', 'conflict'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/state',
    operationId: 'getThreadState',
    summary: "The thread's latest state",
    tag: 'threads',
    params: ThreadParams,
    ok: { status: 200, description: 'A ThreadState.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/state',
    operationId: 'updateThreadState',
    summary: "Merge values into the thread's state as a new checkpoint",
    tag: 'threads',
    params: ThreadParams,
    body: { name: 'ThreadStateUpdate', schema: ThreadStateUpdateBody, required: true },
    ok: { status: 200, description: 'The new checkpoint (`{checkpoint}`).', kind: 'json-object' },
    errors: ['not_found', 'conflict'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/state/:checkpoint_id',
    operationId: 'getThreadStateAtCheckpoint',
    summary: "The thread's state at one checkpoint",
    tag: 'threads',
    params: ThreadCheckpointParams,
    ok: { status: 200, description: 'A ThreadState.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'GET',
    path: '/threads/:thread_id/history',
    operationId: 'getThreadHistory',
    summary: "The thread's checkpoints as ThreadStates, newest first",
    tag: 'threads',
    params: ThreadParams,
    query: ListQuery,
    ok: { status: 200, description: 'ThreadStates.', kind: 'json-array' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/history',
    operationId: 'searchThreadHistory',
    summary: "The thread's checkpoints as ThreadStates, filtered, newest first",
    tag: 'threads',
    params: ThreadParams,
    body: { name: 'ThreadHistory', schema: ThreadHistoryBody, required: false },
    ok: { status: 200, description: 'ThreadStates.', kind: 'json-array' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/copy',
    operationId: 'copyThread',
    summary: 'A new thread with the same metadata, values and state history',
    tag: 'threads',
    params: ThreadParams,
    ok: { status: 200, description: 'The new thread.', kind: 'json-object' },
    errors: ['not_found'],
  },
  // Assistants (LangGraph) and agents (Agent Protocol).
  {
    method: 'GET',
    path: '/assistants/:assistant_id',
    operationId: 'getAssistant',
    summary: 'One assistant',
    tag: 'assistants',
    params: AssistantParams,
    ok: { status: 200, description: 'The assistant.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/assistants/search',
    operationId: 'searchAssistants',
    summary: 'Assistants matching graph_id, name or metadata',
    tag: 'assistants',
    body: { name: 'AssistantSearch', schema: AssistantSearchBody, required: false },
    ok: { status: 200, description: 'The assistants.', kind: 'json-array' },
  },
  {
    method: 'GET',
    path: '/assistants/:assistant_id/schemas',
    operationId: 'getAssistantSchemas',
    summary: "The JSON Schemas of the assistant's agent",
    tag: 'assistants',
    params: AssistantParams,
    ok: { status: 200, description: 'input_schema and output_schema.', kind: 'json-object' },
    errors: ['not_found', 'agent_not_found'],
  },
  {
    method: 'POST',
    path: '/assistants',
    operationId: 'createAssistant',
    summary: 'Create an assistant on a configured agent',
    tag: 'assistants',
    body: { name: 'AssistantCreate', schema: AssistantCreateBody, required: true },
    ok: { status: 200, description: 'The assistant.', kind: 'json-object' },
    errors: ['agent_not_found', 'conflict'],
  },
  {
    method: 'PATCH',
    path: '/assistants/:assistant_id',
    operationId: 'patchAssistant',
    summary: 'Update an assistant as a new version',
    tag: 'assistants',
    params: AssistantParams,
    body: { name: 'AssistantPatch', schema: AssistantPatchBody, required: false },
    ok: { status: 200, description: 'The assistant.', kind: 'json-object' },
    errors: ['not_found', 'agent_not_found'],
  },
  {
    method: 'DELETE',
    path: '/assistants/:assistant_id',
    operationId: 'deleteAssistant',
    summary: 'Delete an assistant and its versions',
    tag: 'assistants',
    params: AssistantParams,
    query: AssistantDeleteQuery,
    ok: { status: 204, description: 'Deleted.', kind: 'none' },
    errors: ['not_found', 'conflict'],
  },
  {
    method: 'POST',
    path: '/assistants/:assistant_id/versions',
    operationId: 'listAssistantVersions',
    summary: "The assistant's versions, highest first",
    tag: 'assistants',
    params: AssistantParams,
    body: { name: 'AssistantVersions', schema: AssistantVersionsBody, required: false },
    ok: { status: 200, description: 'AssistantVersions.', kind: 'json-array' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/assistants/:assistant_id/latest',
    operationId: 'setLatestAssistantVersion',
    summary: 'Make one version the current one',
    tag: 'assistants',
    params: AssistantParams,
    body: { name: 'AssistantLatest', schema: AssistantLatestBody, required: true },
    ok: { status: 200, description: 'The assistant.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/assistants/count',
    operationId: 'countAssistants',
    summary: 'How many assistants match',
    tag: 'assistants',
    body: { name: 'AssistantCount', schema: AssistantCountBody, required: false },
    ok: { status: 200, description: 'A bare integer.', kind: 'json' },
  },
  {
    method: 'GET',
    path: '/assistants/:assistant_id/graph',
    operationId: 'getAssistantGraph',
    summary: 'The agent as a graph: start → agent → end',
    tag: 'assistants',
    params: AssistantParams,
    query: AssistantGraphQuery,
    ok: { status: 200, description: '`{nodes, edges}`.', kind: 'json-object' },
    errors: ['not_found', 'agent_not_found'],
  },
  {
    method: 'GET',
    path: '/assistants/:assistant_id/subgraphs',
    operationId: 'getAssistantSubgraphs',
    summary: 'Always `{}`: an agent has no subgraphs',
    tag: 'assistants',
    params: AssistantParams,
    ok: { status: 200, description: '`{}`.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'GET',
    path: '/assistants/:assistant_id/subgraphs/:namespace',
    operationId: 'getAssistantSubgraphsOfNamespace',
    summary: 'Always `{}`: an agent has no subgraphs',
    tag: 'assistants',
    params: AssistantSubgraphParams,
    ok: { status: 200, description: '`{}`.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/agents/search',
    operationId: 'searchAgents',
    summary: 'Agent Protocol: assistants as Agents',
    tag: 'agents',
    body: { name: 'AgentSearch', schema: AgentSearchBody, required: false },
    ok: { status: 200, description: 'The agents.', kind: 'json-array' },
  },
  {
    method: 'GET',
    path: '/agents/:agent_id',
    operationId: 'getAgent',
    summary: 'Agent Protocol: one assistant as an Agent',
    tag: 'agents',
    params: AgentParams,
    ok: { status: 200, description: 'The agent.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'GET',
    path: '/agents/:agent_id/schemas',
    operationId: 'getAgentSchemas',
    summary: "Agent Protocol: the agent's input and output JSON Schemas",
    tag: 'agents',
    params: AgentParams,
    ok: { status: 200, description: 'input_schema and output_schema.', kind: 'json-object' },
    errors: ['not_found', 'agent_not_found'],
  },
  // Store (long-term memory).
  {
    method: 'PUT',
    path: '/store/items',
    operationId: 'putStoreItem',
    summary: 'Put an item under a namespace and key',
    tag: 'store',
    body: { name: 'StorePut', schema: StorePutBody, required: true },
    ok: { status: 204, description: 'Stored.', kind: 'none' },
  },
  {
    method: 'GET',
    path: '/store/items',
    operationId: 'getStoreItem',
    summary: 'One item (`null` when there is none)',
    tag: 'store',
    query: StoreGetQuery,
    ok: { status: 200, description: 'The item, or `null`.', kind: 'json' },
  },
  {
    method: 'DELETE',
    path: '/store/items',
    operationId: 'deleteStoreItem',
    summary: 'Delete an item',
    tag: 'store',
    body: { name: 'StoreDelete', schema: StoreDeleteBody, required: true },
    ok: { status: 204, description: 'Deleted.', kind: 'none' },
  },
  {
    method: 'POST',
    path: '/store/items/search',
    operationId: 'searchStoreItems',
    summary: 'Items under a namespace prefix matching a filter',
    tag: 'store',
    body: { name: 'StoreSearch', schema: StoreSearchBody, required: false },
    ok: { status: 200, description: '`{items}`.', kind: 'json-object' },
  },
  {
    method: 'POST',
    path: '/store/namespaces',
    operationId: 'listStoreNamespaces',
    summary: 'The namespaces in use, by prefix, suffix and depth',
    tag: 'store',
    body: { name: 'StoreNamespaces', schema: StoreNamespacesBody, required: false },
    ok: { status: 200, description: '`{namespaces}`.', kind: 'json-object' },
  },
  // Approvals (human in the loop: ctx.interrupt).
  {
    method: 'GET',
    path: '/approvals',
    operationId: 'listApprovals',
    summary: "The tenant's interrupts (default: pending), by agent, thread or run; oldest pending first",
    tag: 'approvals',
    query: ApprovalListQuery,
    ok: { status: 200, description: 'The approvals (interrupts).', kind: 'json-array' },
  },
  {
    method: 'GET',
    path: '/approvals/:interrupt_id',
    operationId: 'getApproval',
    summary: 'One interrupt: its payload, status and answer (who answered and when)',
    tag: 'approvals',
    params: ApprovalParams,
    ok: { status: 200, description: 'The approval.', kind: 'json-object' },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/approvals/:interrupt_id',
    operationId: 'answerApproval',
    summary: 'Answer an interrupt exactly once ({decision, data, comment}); the run resumes on any worker',
    tag: 'approvals',
    params: ApprovalParams,
    body: { name: 'ApprovalAnswer', schema: ApprovalAnswerBody, required: true },
    ok: { status: 200, description: 'The answered approval.', kind: 'json-object' },
    errors: ['not_found', 'conflict'],
  },
  // Dead letters (runs that ended `dead`: retries or the crash-loop cap exhausted).
  {
    method: 'GET',
    path: '/dead-letters',
    operationId: 'listDeadLetters',
    summary: "The tenant's dead runs not yet discarded (include_discarded=true: all), by agent or thread",
    tag: 'dead-letters',
    query: DeadLetterListQuery,
    ok: { status: 200, description: 'The dead letters, most recently dead first.', kind: 'json-array' },
  },
  {
    method: 'GET',
    path: '/dead-letters/:run_id',
    operationId: 'getDeadLetter',
    summary: 'A dead run: its error, attempts, step history, last checkpoint and redrives',
    tag: 'dead-letters',
    params: DeadLetterParams,
    ok: {
      status: 200,
      description: '`{run, error, attempts, steps, checkpoint, redrives}`.',
      kind: 'json-object',
    },
    errors: ['not_found'],
  },
  {
    method: 'POST',
    path: '/dead-letters/:run_id/redrive',
    operationId: 'redriveDeadLetter',
    summary:
      'Send a dead run back to the queue ({input, state} patches optional); it resumes from its last checkpoint',
    tag: 'dead-letters',
    params: DeadLetterParams,
    body: { name: 'Redrive', schema: RedriveBody, required: false },
    ok: {
      status: 200,
      description: '`{run, redrive}`: the run, now pending, and the redrive record.',
      kind: 'json-object',
    },
    errors: ['not_found', 'agent_not_found', 'input_invalid', 'conflict'],
  },
  {
    method: 'POST',
    path: '/dead-letters/:run_id/discard',
    operationId: 'discardDeadLetter',
    summary: 'Acknowledge a dead run: it leaves the list, is kept for audit and can no longer be redriven',
    tag: 'dead-letters',
    params: DeadLetterParams,
    ok: { status: 200, description: 'The discarded dead letter.', kind: 'json-object' },
    errors: ['not_found', 'conflict'],
  },
  {
    method: 'POST',
    path: '/threads/:thread_id/events',
    operationId: 'sendThreadEvent',
    summary: 'Deliver an event for ctx.waitForEvent: resumes a waiting run, or is kept until a wait matches',
    tag: 'threads',
    params: ThreadParams,
    body: { name: 'ThreadEvent', schema: ThreadEventBody, required: true },
    ok: {
      status: 200,
      description: '`{signal_id, consumed_by}`: the run that consumed it now, or null.',
      kind: 'json-object',
    },
    errors: ['not_found'],
  },
  // Meta.
  {
    method: 'GET',
    path: '/ok',
    operationId: 'ok',
    summary: 'Liveness',
    tag: 'meta',
    ok: { status: 200, description: '`{ok: true}`.', kind: 'json-object' },
  },
  {
    method: 'GET',
    path: '/info',
    operationId: 'info',
    summary: 'Version and configured agents',
    tag: 'meta',
    ok: { status: 200, description: '`{version, agents}`.', kind: 'json-object' },
  },
  {
    method: 'GET',
    path: '/openapi.json',
    operationId: 'openapi',
    summary: 'This OpenAPI 3.1 document',
    tag: 'meta',
    ok: { status: 200, description: 'The OpenAPI document.', kind: 'json-object' },
  },
  {
    method: 'GET',
    path: '/docs',
    operationId: 'docs',
    summary: 'The API reference (Swagger UI over /openapi.json, served from this gateway)',
    tag: 'meta',
    ok: { status: 200, description: 'An HTML page.', kind: 'html' },
  },
  {
    method: 'GET',
    path: '/docs/assets/:file',
    operationId: 'docsAsset',
    summary: 'A static asset of the API reference page',
    tag: 'meta',
    params: DocsAssetParams,
    ok: { status: 200, description: 'The asset.', kind: 'asset' },
    errors: ['not_found'],
  },
];

/** The error codes an operation can answer: its own plus those of its inputs, and `internal`. */
export function errorCodesOf(op: Operation): ErrorCode[] {
  const codes = new Set<ErrorCode>();
  if (op.params || op.query || op.body || op.headers) codes.add('invalid_request');
  // Fastify parses a body sent to any method but GET, whether the route reads it or not.
  if (op.body || op.method !== 'GET')
    for (const code of ['invalid_json', 'body_too_large', 'unsupported_media_type'] as const) codes.add(code);
  for (const code of op.errors ?? []) codes.add(code);
  // Answered before the handler runs: authentication, scopes, admission (auth.ts, limits.ts).
  if (!isPublic(op))
    for (const code of ['unauthorized', 'forbidden', 'rate_limited'] as const) codes.add(code);
  codes.add('internal');
  return [...codes];
}

/** Whether the operation needs no API key (gateway/auth.ts decides). */
export const isPublic = (op: Operation) => routeAccess(op.method, op.path) === 'public';
