import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { resolveAssistant } from '../../assistants/resolve.ts';
import { HangarError } from '../../errors.ts';
import type { EventEnvelope } from '../../events/envelope.ts';
import { readEvents } from '../../events/log.ts';
import { pendingInterrupts } from '../../hitl/repository.ts';
import { RunCreateBatcher } from '../../runs/batcher.ts';
import { type CancelRequest, cancelRun } from '../../runs/cancel.ts';
import { runConcurrencyKey } from '../../runs/concurrency.ts';
import { createRunIdempotent, fingerprint, parseIdempotencyKey } from '../../runs/idempotency.ts';
import {
  type CreateRunInput,
  createRun,
  createRunInTx,
  deleteRun,
  findRunsToCancel,
  getRun,
  listRuns,
} from '../../runs/repository.ts';
import { isTerminal } from '../../runs/status.ts';
import type { Run } from '../../runs/types.ts';
import { sqlState, UNIQUE_VIOLATION } from '../../store/sql.ts';
import { followThread } from '../../streaming/follow.ts';
import {
  DEFAULT_STREAM_MODES,
  LangGraphMapper,
  type StreamMode,
  StreamModeParam,
} from '../../streaming/langgraph.ts';
import { parseLastEventId, SseWriter } from '../../streaming/sse.ts';
import { getThread, threadLastSeq } from '../../threads/repository.ts';
import { acceptWebhook } from '../../webhooks/url.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith, zodError } from '../errors.ts';
import {
  CancelManyBody,
  CancelManyQuery,
  CancelQuery,
  JoinQuery,
  RunBatchBody,
  RunCreateBody,
  RunListQuery,
  RunParams,
  StatelessRunParams,
  ThreadParams,
} from '../schemas.ts';
import { resumeWithCommand } from './approvals.ts';

/** The run as the API shows it (no tenant id). */
export function publicRun(run: Run): Omit<Run, 'tenant_id'> {
  const { tenant_id: _tenant, ...rest } = run;
  return rest;
}

export function registerRunRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  // `stream_mode` is kept in the run's kwargs: a stream joined or resumed without one uses it.
  // With an `Idempotency-Key`, a repeat of the request answers the run the first one created.
  /**
   * A create request's body, checked (schema, assistant, the agent's input) and
   * turned into the run to create. `prefix` names the body in errors (`[2]` in a batch).
   */
  const prepare = async (
    request: FastifyRequest,
    body: z.output<typeof RunCreateBody>,
    threadId: string | undefined,
    defaultModes: readonly StreamMode[] | undefined,
    prefix = '',
  ): Promise<CreateRunInput> => {
    const at = (field: string) => (prefix === '' ? field : `${prefix}.${field}`);
    // The assistant's config goes under the run's (assistants/resolve.ts); the merge is what the run stores.
    const { agent, assistantId, config } = await resolveAssistant(
      deps,
      deps.tenantOf(request),
      body.assistant_id,
      body.config,
    );
    const input = agent.input.safeParse(body.input ?? {});
    if (!input.success) throw zodError(input.error, at('input'), 'input_invalid');
    const concurrency = runConcurrencyKey(
      agent.concurrency,
      input.data,
      body.concurrency_key,
      at('concurrency_key'),
    );
    const modes =
      body.stream_mode === undefined || body.stream_mode === null
        ? defaultModes
        : parseWith(StreamModeParam, body.stream_mode, at('stream_mode'));
    const kwargs = modes === undefined ? body.kwargs : { ...body.kwargs, stream_mode: modes };
    const runInput: CreateRunInput = {
      tenantId: deps.tenantOf(request),
      agent: agent.name,
      assistantId,
      input: body.input ?? {},
      ...(threadId === undefined ? {} : { threadId }),
      ...(body.run_id === undefined ? {} : { runId: body.run_id }),
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
      config,
      ...(kwargs === undefined ? {} : { kwargs }),
      ...(body.multitask_strategy === undefined ? {} : { multitaskStrategy: body.multitask_strategy }),
      ...(body.priority === undefined ? {} : { priority: body.priority }),
      ...(concurrency === null ? {} : { concurrency }),
      ...(body.webhook === undefined
        ? {}
        : { webhook: acceptWebhook(body.webhook, deps.webhooksEnabled, deps.webhookPrivateNetworks) }),
      createThread: body.if_not_exists === 'create',
      effects: { events: [], cancelRequested: [] },
    };
    return runInput;
  };

  // `stream_mode` is kept in the run's kwargs: a stream joined or resumed without one uses it.
  // With an `Idempotency-Key`, a repeat of the request answers the run the first one created.
  const create = async (
    request: FastifyRequest,
    threadId: string | undefined,
    defaultModes?: readonly StreamMode[],
  ): Promise<{ run: Run; replayed: boolean; cancelOnDisconnect: boolean }> => {
    const key = parseIdempotencyKey(request.headers['idempotency-key']);
    const body = parseWith(RunCreateBody, request.body, '');
    const cancelOnDisconnect = body.on_disconnect === 'cancel';
    // LangGraph's `command: { resume }` answers the thread's interrupt and resumes its run (routes/approvals.ts).
    const command = (body as { command?: unknown }).command;
    if (command !== undefined && command !== null) {
      const run = await resumeWithCommand(deps, request, threadId, command);
      return { run, replayed: false, cancelOnDisconnect };
    }
    const runInput = await prepare(request, body, threadId, defaultModes);
    await deps.admission.beforeCreate(runInput.tenantId);
    if (key === undefined) {
      const run = RunCreateBatcher.accepts(runInput)
        ? await deps.creates.create(runInput)
        : await createRun(deps.db, runInput);
      afterCreate(deps, runInput);
      return { run, replayed: false, cancelOnDisconnect };
    }
    // The fingerprint covers the route and thread too: one key on /runs and on /runs/wait is a reuse.
    const { run, replayed } = await createRunIdempotent(
      deps.db,
      { ...runInput, runId: body.run_id ?? randomUUID() },
      {
        key,
        fingerprint: fingerprint({
          route: request.routeOptions.url,
          thread_id: threadId,
          body: request.body,
        }),
        ttlMs: deps.idempotencyTtlMs,
      },
    );
    if (!replayed) afterCreate(deps, runInput);
    return { run, replayed, cancelOnDisconnect };
  };

  /** The thread's log position before a run is created on it (0 for a new thread). */
  const positionBeforeCreate = async (request: FastifyRequest, threadId: string | undefined) =>
    threadId === undefined ? 0 : ((await threadLastSeq(deps.db, deps.tenantOf(request), threadId)) ?? 0);

  // Create, then hold the request until the run ends. The thread's log position is taken before
  // the run exists, so every event of the run (its terminal one included) comes after it.
  const createAndWait = async (
    request: FastifyRequest,
    reply: FastifyReply,
    threadId: string | undefined,
  ) => {
    const afterSeq = await positionBeforeCreate(request, threadId);
    const { run, cancelOnDisconnect } = await create(request, threadId);
    reply.header('content-location', `/threads/${run.thread_id}/runs/${run.run_id}`);
    return waitForResult(request, reply, deps, run, afterSeq, cancelOnDisconnect);
  };

  // Streaming runs: same body as the background create plus `stream_mode` (default `values`); the
  // answer is the run's events in LangGraph form. As for wait, the position is taken before the run exists.
  const createAndStream = async (
    request: FastifyRequest,
    reply: FastifyReply,
    threadId: string | undefined,
  ) => {
    const afterSeq = await positionBeforeCreate(request, threadId);
    const { run, replayed, cancelOnDisconnect } = await create(request, threadId, DEFAULT_STREAM_MODES);
    // A repeated request (same Idempotency-Key) streams the run from its start, as the first one did.
    await streamRun(request, reply, deps, run, {
      afterSeq: replayed ? 0 : afterSeq,
      modes: storedModes(run) ?? DEFAULT_STREAM_MODES,
      cancelOnDisconnect,
    });
  };

  // Background runs answer at once with the pending run. 200, not 202: the
  // LangGraph SDK reads a 202 as an empty body.
  app.post('/runs', async (request) => publicRun((await create(request, undefined)).run));
  app.post('/threads/:thread_id/runs', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    return publicRun((await create(request, thread_id)).run);
  });

  // Blocking runs: same body as the background create; the answer is the run's result (`runResult`).
  app.post('/runs/wait', async (request, reply) => createAndWait(request, reply, undefined));
  app.post('/threads/:thread_id/runs/wait', async (request, reply) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    return createAndWait(request, reply, thread_id);
  });

  app.post('/runs/stream', async (request, reply) => createAndStream(request, reply, undefined));
  app.post('/threads/:thread_id/runs/stream', async (request, reply) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    return createAndStream(request, reply, thread_id);
  });

  app.get('/threads/:thread_id/runs', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const { limit, offset, status } = parseWith(RunListQuery, request.query, 'query');
    const runs = await listRuns(deps.db, deps.tenantOf(request), thread_id, {
      limit,
      offset,
      ...(status === undefined ? {} : { status }),
    });
    return runs.map(publicRun);
  });

  app.get('/threads/:thread_id/runs/:run_id', async (request) => {
    const run = await findRun(request, deps);
    return publicRun(run);
  });

  // `stream_mode` (query, repeatable), else the modes the run was created with; a run created
  // with none streams Hangar's own channels (what `hangar run --follow` and the dashboard read).
  app.get('/threads/:thread_id/runs/:run_id/stream', async (request, reply) => {
    await joinStream(request, reply, deps, await findRun(request, deps));
  });

  app.get('/threads/:thread_id/runs/:run_id/join', async (request, reply) => {
    const { thread_id } = parseWith(RunParams, request.params, 'path');
    // Before reading the run: if it is still going, its terminal event comes after this position.
    const { cancel_on_disconnect } = parseWith(JoinQuery, request.query, 'query');
    const afterSeq = (await threadLastSeq(deps.db, deps.tenantOf(request), thread_id)) ?? 0;
    const run = await findRun(request, deps);
    return waitForResult(request, reply, deps, run, afterSeq, isTrue(cancel_on_disconnect));
  });

  // Cancel: a run no live worker holds ends at once; a running one is ended by its worker, which
  // hears of it through the bus. `wait=1` answers 204 once the run has ended; else 202 at once.
  app.post('/threads/:thread_id/runs/:run_id/cancel', async (request, reply) => {
    const query = parseWith(CancelQuery, request.query, 'query');
    const run = await findRun(request, deps);
    const afterSeq = (await threadLastSeq(deps.db, run.tenant_id, run.thread_id)) ?? 0;
    const result = await cancelAndPublish(deps, run.tenant_id, run.run_id, {
      action: query.action,
      reason: 'api',
      by: principal(request, deps),
    });
    if (!isTrue(query.wait) || result.outcome === 'finished' || result.outcome === 'cancelled') {
      return reply
        .status(isTrue(query.wait) ? 204 : 202)
        .send(
          isTrue(query.wait)
            ? undefined
            : { run_id: run.run_id, thread_id: run.thread_id, outcome: result.outcome },
        );
    }
    // Until the end: a run that paused at an interrupt just before the cancel landed is ended by it.
    let position = afterSeq;
    for (;;) {
      const stop = await waitForStop(reply, deps, run, position);
      if (stop === undefined || stop.terminal) break;
      position = stop.seq;
    }
    return reply.status(204).send();
  });

  // Cancel many: the runs named (on a thread, or anywhere in the tenant), every run of a thread,
  // or every pending/running run of the tenant.
  app.post('/runs/cancel', async (request, reply) => {
    const { action } = parseWith(CancelManyQuery, request.query, 'query');
    const body = parseWith(CancelManyBody, request.body ?? {}, '');
    const tenantId = deps.tenantOf(request);
    const runIds = await findRunsToCancel(deps.db, tenantId, {
      ...(body.thread_id === undefined ? {} : { threadId: body.thread_id }),
      ...(body.run_ids === undefined ? {} : { runIds: body.run_ids }),
      ...(body.status === undefined ? {} : { status: body.status }),
    });
    if (body.run_ids !== undefined) {
      const missing = body.run_ids.filter((id) => !runIds.all.includes(id));
      if (missing.length > 0) {
        throw new HangarError('not_found', `run ${missing[0]} not found`, { details: { run_ids: missing } });
      }
    }
    const by = principal(request, deps);
    for (const runId of runIds.active)
      await cancelAndPublish(deps, tenantId, runId, { action, reason: 'api', by });
    return reply.status(204).send();
  });

  // Deletes a finished run (its steps with it; its events stay in the thread's log). An active
  // run must be cancelled first: deleting it would orphan the work a worker is doing.
  app.delete('/threads/:thread_id/runs/:run_id', async (request, reply) => {
    const run = await findRun(request, deps);
    if (!isTerminal(run.status)) {
      throw new HangarError(
        'conflict',
        `run ${run.run_id} is ${run.status}; cancel it (POST …/cancel) before deleting it`,
        { details: { run_id: run.run_id, status: run.status } },
      );
    }
    await deleteRun(deps.db, run.tenant_id, run.run_id);
    return reply.status(204).send();
  });

  // A batch of stateless background runs, all created or none: every body is checked first (errors
  // name the index), then one transaction creates them.
  app.post('/runs/batch', async (request) => {
    if (request.headers['idempotency-key'] !== undefined) {
      throw new HangarError(
        'invalid_request',
        'Idempotency-Key is not supported on /runs/batch; give each run a run_id instead',
        { details: { header: 'idempotency-key' } },
      );
    }
    const bodies = parseWith(RunBatchBody, request.body, '');
    const inputs: CreateRunInput[] = [];
    for (const [i, raw] of bodies.entries()) {
      const prefix = `[${i}]`;
      inputs.push(
        await prepare(request, parseWith(RunCreateBody, raw, prefix), undefined, undefined, prefix),
      );
    }
    for (const input of inputs) await deps.admission.beforeCreate(input.tenantId);
    const runs = await deps.db
      .transaction(async (tx) => {
        const created: Run[] = [];
        for (const input of inputs) created.push(await createRunInTx(tx, input));
        return created;
      })
      .catch((err: unknown) => {
        // A client-chosen run_id that is taken (by anyone, in any tenant: not said which).
        if (sqlState(err) !== UNIQUE_VIOLATION) throw err;
        throw new HangarError('conflict', 'a run_id in the batch already exists; nothing was created', {
          details: { run_ids: inputs.flatMap((i) => (i.runId === undefined ? [] : [i.runId])) },
        });
      });
    deps.bus.notifyWork();
    return runs.map(publicRun);
  });

  // A run's stream by run id alone (the SDK's `joinStream` without a thread).
  app.get('/runs/:run_id/stream', async (request, reply) => {
    const { run_id } = parseWith(StatelessRunParams, request.params, 'path');
    const run = await getRun(deps.db, deps.tenantOf(request), run_id);
    if (run === null) {
      throw new HangarError('not_found', `run ${run_id} not found`, { details: { run_id } });
    }
    await joinStream(request, reply, deps, run);
  });
}

/** `1`/`true` in a query flag. */
function isTrue(flag: string | undefined): boolean {
  return flag === '1' || flag === 'true';
}

/** Who a request acts as, recorded on what it cancels. */
function principal(request: FastifyRequest, deps: GatewayDeps): string {
  return deps.principalOf?.(request) ?? 'api';
}

/** After a create commits: wake the workers, and carry out what its multitask strategy cancelled. */
function afterCreate(deps: GatewayDeps, input: CreateRunInput): void {
  deps.bus.notifyWork();
  if (input.effects !== undefined)
    publishCancellations(deps, input.effects.events, input.effects.cancelRequested);
}

/** Publishes the terminal events of runs cancelled at once, and tells workers of runs they must end. */
function publishCancellations(
  deps: GatewayDeps,
  events: readonly EventEnvelope[],
  requested: readonly string[],
) {
  const byThread = new Map<string, EventEnvelope[]>();
  for (const event of events) {
    const list = byThread.get(event.thread_id) ?? [];
    list.push(event);
    byThread.set(event.thread_id, list);
  }
  for (const [threadId, list] of byThread) deps.bus.publishEvents(threadId, list);
  for (const runId of requested) deps.bus.notifyCancel(runId);
  if (events.length > 0) deps.bus.notifyWork(); // a cancelled run may have released the next one
}

async function cancelAndPublish(deps: GatewayDeps, tenantId: string, runId: string, request: CancelRequest) {
  const result = await cancelRun(deps.db, tenantId, runId, request);
  publishCancellations(deps, result.events, result.outcome === 'requested' ? [runId] : []);
  return result;
}

/**
 * Streams an existing run: `stream_mode` (query, repeatable), else the modes
 * the run was created with; a run created with none streams Hangar's own
 * channels (what `hangar run --follow` reads). `Last-Event-ID` resumes.
 */
async function joinStream(request: FastifyRequest, reply: FastifyReply, deps: GatewayDeps, run: Run) {
  const query = request.query as Record<string, unknown>;
  const asked =
    query.stream_mode === undefined
      ? undefined
      : parseWith(StreamModeParam, query.stream_mode, 'stream_mode');
  const { cancel_on_disconnect } = parseWith(JoinQuery, query, 'query');
  const lastEventId = parseLastEventId(request.headers['last-event-id'] ?? query.last_event_id);
  await streamRun(request, reply, deps, run, {
    afterSeq: lastEventId ?? 0,
    resumed: lastEventId !== undefined,
    modes: asked ?? storedModes(run),
    cancelOnDisconnect: isTrue(cancel_on_disconnect),
  });
}

/**
 * What `wait` and `join` answer for a finished run, as the LangGraph SDK's
 * `runs.wait` / `runs.join` expect:
 *
 * - `success`: the thread's values (`ctx.state`) when the agent set any, as
 *   LangGraph returns the graph's final state; otherwise the run's output.
 *   An output that is not a JSON object or array is wrapped as `{ output }`:
 *   the SDK looks for `__error__` in the body with `in`, which throws on
 *   `null`, strings and numbers.
 * - `error`, `timeout`, `dead`, `cancelled`: `{ __error__: { error, message, code } }`
 *   with status 200, as LangGraph does. `error` is the thrown error's class
 *   name for an agent's own error (LangGraph's `type(e).__name__`), else
 *   Hangar's error code (`output_invalid`, `timeout`, …). The SDK's `wait`
 *   throws `Error("<error>: <message>")` on it unless `raiseError: false`.
 *
 * @example
 * runResult({ ...run, status: 'success', output: { answer: 42 } }, {}); // { answer: 42 }
 * runResult({ ...run, status: 'success', output: 'hi' }, {});           // { output: 'hi' }
 */
export function runResult(run: Run, values: Record<string, unknown>): unknown {
  if (run.status === 'success') {
    if (Object.keys(values).length > 0) return values;
    return typeof run.output === 'object' && run.output !== null
      ? run.output
      : { output: run.output ?? null };
  }
  const record = run.error;
  const code = record?.code ?? run.status;
  return {
    __error__: {
      error: record?.code === 'agent_error' ? record.type : code,
      message: record?.message ?? `run ${run.run_id} ended with status ${run.status}`,
      code,
    },
  };
}

/**
 * Follows the thread's log (bus + log, no polling loop) until the run ends or
 * pauses at an interrupt, then answers `runResult` (or, paused, the thread's
 * values with `__interrupt__`, as LangGraph's `wait` and `join` do). A client
 * that disconnects, or a gateway shutdown, stops the wait; the run itself goes
 * on unless `cancelOnDisconnect` (then a client that leaves cancels it).
 */
async function waitForResult(
  request: FastifyRequest,
  reply: FastifyReply,
  deps: GatewayDeps,
  run: Run,
  afterSeq: number,
  cancelOnDisconnect = false,
): Promise<unknown> {
  let current: Run | null = run;
  let position = afterSeq;
  // An interrupt answered before we looked again leaves the run going: keep waiting from there.
  while (current !== null && !isTerminal(current.status) && current.status !== 'interrupted') {
    const stop = await waitForStop(reply, deps, current, position);
    if (stop === undefined) {
      if (cancelOnDisconnect && !deps.shutdown.aborted) await cancelForDisconnect(request, deps, run);
      request.log.info({ run_id: run.run_id }, 'wait ended before the run: client gone or shutdown');
      throw new HangarError('unavailable', `stopped waiting for run ${run.run_id}; it goes on`, {
        details: { run_id: run.run_id, thread_id: run.thread_id },
      });
    }
    position = stop.seq;
    current = await getRun(deps.db, run.tenant_id, run.run_id);
    if (stop.terminal && current !== null && !isTerminal(current.status)) {
      throw new HangarError('internal', `run ${run.run_id} is not finished after its terminal event`);
    }
  }
  if (current === null) {
    // Rolled back (cancelled and deleted) while we waited.
    return runResult({ ...run, status: 'cancelled', error: null }, {});
  }
  const thread = await getThread(deps.db, run.tenant_id, run.thread_id);
  if (current.status === 'interrupted') {
    const pending = await pendingInterrupts(deps.db, run.tenant_id, run.thread_id);
    return {
      ...(thread?.values ?? {}),
      __interrupt__: pending
        .filter((i) => i.run_id === run.run_id)
        .map((i) => ({ id: i.interrupt_id, value: i.payload })),
    };
  }
  return runResult(current, thread?.values ?? {});
}

/** A run's lifecycle event saying it paused for an answer. */
function isInterruptEvent(event: EventEnvelope): boolean {
  const data = event.data as { event?: unknown } | null;
  return (
    event.channel === 'lifecycle' &&
    data !== null &&
    typeof data === 'object' &&
    data.event === 'run.interrupted'
  );
}

/**
 * Holds the request until the run's terminal event or an interrupt; undefined
 * if the client left or the gateway stops first.
 */
async function waitForStop(
  reply: FastifyReply,
  deps: GatewayDeps,
  run: Run,
  afterSeq: number,
): Promise<{ seq: number; terminal: boolean } | undefined> {
  const abort = new AbortController();
  const onClose = () => abort.abort();
  reply.raw.on('close', onClose);
  deps.shutdown.addEventListener('abort', onClose);
  try {
    let last = afterSeq;
    for await (const event of runEvents(deps, run, afterSeq, abort.signal)) {
      last = event.seq;
      if (isInterruptEvent(event)) return { seq: event.seq, terminal: false };
    }
    return abort.signal.aborted ? undefined : { seq: last, terminal: true };
  } finally {
    abort.abort();
    reply.raw.off('close', onClose);
    deps.shutdown.removeEventListener('abort', onClose);
  }
}

/** `on_disconnect: cancel` / `cancel_on_disconnect=1`: the client that was following the run is gone. */
async function cancelForDisconnect(request: FastifyRequest, deps: GatewayDeps, run: Run): Promise<void> {
  try {
    const result = await cancelAndPublish(deps, run.tenant_id, run.run_id, {
      action: 'interrupt',
      reason: 'client_disconnected',
      by: principal(request, deps),
    });
    request.log.info({ run_id: run.run_id, outcome: result.outcome }, 'client disconnected; run cancelled');
  } catch (err) {
    request.log.warn({ err, run_id: run.run_id }, 'cancel on disconnect failed');
  }
}

async function findRun(request: FastifyRequest, deps: GatewayDeps): Promise<Run> {
  const { thread_id, run_id } = parseWith(RunParams, request.params, 'path');
  const run = await getRun(deps.db, deps.tenantOf(request), run_id);
  if (run === null || run.thread_id !== thread_id) {
    throw new HangarError('not_found', `run ${run_id} not found on thread ${thread_id}`, {
      details: { thread_id, run_id },
    });
  }
  return run;
}

/** The `stream_mode` a run was created with, if any. */
function storedModes(run: Run): StreamMode[] | undefined {
  const parsed = StreamModeParam.safeParse(run.kwargs.stream_mode);
  return parsed.success ? parsed.data : undefined;
}

interface StreamOptions {
  /** Events after this thread seq are sent. */
  afterSeq: number;
  /** A reconnect (`Last-Event-ID`): no `metadata` event, and the mapper is caught up to `afterSeq`. */
  resumed?: boolean;
  /** LangGraph stream modes; undefined streams the raw channels (`event:` = channel). */
  modes?: readonly StreamMode[];
  /** A client that disconnects before the run's end cancels the run. */
  cancelOnDisconnect?: boolean;
}

/**
 * Streams a run's events as SSE after a position until the run's terminal
 * event, then closes. Every event's SSE id is the seq of the envelope it
 * comes from, so `Last-Event-ID` resumes exactly after it.
 */
async function streamRun(
  request: FastifyRequest,
  reply: FastifyReply,
  deps: GatewayDeps,
  run: Run,
  options: StreamOptions,
): Promise<void> {
  const { afterSeq, modes } = options;
  const abort = new AbortController();
  const onClose = () => abort.abort();
  request.raw.on('close', onClose);
  reply.raw.on('close', onClose);
  deps.shutdown.addEventListener('abort', onClose);
  const runPath = `/threads/${run.thread_id}/runs/${run.run_id}`;
  reply.hijack();
  // `Content-Location` names the run (the SDK's `onRunCreated`); `Location` is where the SDK reconnects.
  const sse = new SseWriter(reply.raw, {
    'content-location': runPath,
    ...(modes === undefined ? {} : { location: `${runPath}/stream` }),
  });
  let ended = false;
  try {
    const mapper = modes === undefined ? undefined : new LangGraphMapper(modes, run);
    if (mapper !== undefined && options.resumed === true) {
      for await (const event of replayRun(deps, run, 0, abort.signal)) {
        if (event.seq > afterSeq) break;
        mapper.map(event);
      }
    }
    if (options.resumed !== true) {
      await sse.send('metadata', { run_id: run.run_id, thread_id: run.thread_id, attempt: run.attempt });
    }
    for await (const event of runEvents(deps, run, afterSeq, abort.signal)) {
      if (mapper === undefined) {
        await sse.sendEnvelope(event);
      } else {
        for (const mapped of mapper.map(event)) await sse.send(mapped.event, mapped.data, event.seq);
        // LangGraph ends a run's stream at the interrupt it pauses on (a resume streams on from there);
        // an interrupt the run has since got past is just history.
        if (
          isInterruptEvent(event) &&
          (await getRun(deps.db, run.tenant_id, run.run_id))?.status === 'interrupted'
        ) {
          break;
        }
      }
      if (abort.signal.aborted) break;
    }
    ended = !abort.signal.aborted;
  } catch (err) {
    if (!abort.signal.aborted) request.log.error({ err, run_id: run.run_id }, 'run stream failed');
  } finally {
    deps.shutdown.removeEventListener('abort', onClose);
    sse.end();
  }
  if (!ended && options.cancelOnDisconnect === true && !deps.shutdown.aborted && abort.signal.aborted) {
    await cancelForDisconnect(request, deps, run);
  }
}

/** Pages through a finished run's events after a position, then ends. */
/**
 * A run's events after a position, ending after its terminal event. A
 * finished run's events are all in the log: following it live would wait
 * forever for a terminal event the client already has (a reconnect with
 * Last-Event-ID after the end), so it is replayed from the log instead.
 */
function runEvents(
  deps: GatewayDeps,
  run: Run,
  afterSeq: number,
  signal: AbortSignal,
): AsyncIterable<EventEnvelope> {
  if (isTerminal(run.status)) return replayRun(deps, run, afterSeq, signal);
  return followThread({
    db: deps.db,
    bus: deps.bus,
    tenantId: run.tenant_id,
    threadId: run.thread_id,
    runId: run.run_id,
    afterSeq,
    signal,
    runEnded: async () => {
      const current = await getRun(deps.db, run.tenant_id, run.run_id);
      return current === null || isTerminal(current.status);
    },
  });
}

async function* replayRun(
  deps: GatewayDeps,
  run: Run,
  afterSeq: number,
  signal: AbortSignal,
): AsyncGenerator<EventEnvelope> {
  const limit = 500;
  let last = afterSeq;
  while (!signal.aborted) {
    const page = await readEvents(deps.db, run.tenant_id, run.thread_id, {
      afterSeq: last,
      limit,
      runId: run.run_id,
    });
    for (const event of page) {
      last = event.seq;
      yield event;
    }
    if (page.length < limit) return;
  }
}
