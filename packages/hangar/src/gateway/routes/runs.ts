import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HangarError } from '../../errors.ts';
import type { EventEnvelope } from '../../events/envelope.ts';
import { readEvents } from '../../events/log.ts';
import { createRun, getRun, listThreadRuns } from '../../runs/repository.ts';
import { isTerminal } from '../../runs/status.ts';
import type { Run } from '../../runs/types.ts';
import { followThread } from '../../streaming/follow.ts';
import { parseLastEventId, SseWriter } from '../../streaming/sse.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith, zodError } from '../errors.ts';
import { ListQuery, RunCreateBody, RunParams, ThreadParams } from '../schemas.ts';

/** The run as the API shows it (no tenant id). */
export function publicRun(run: Run): Omit<Run, 'tenant_id'> {
  const { tenant_id: _tenant, ...rest } = run;
  return rest;
}

export function registerRunRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const create = async (request: FastifyRequest, threadId: string | undefined) => {
    const body = parseWith(RunCreateBody, request.body, '');
    const { agent, assistantId } = deps.registry.resolve(body.assistant_id);
    const input = agent.input.safeParse(body.input ?? {});
    if (!input.success) throw zodError(input.error, 'input', 'input_invalid');
    const run = await createRun(deps.db, {
      tenantId: deps.tenantOf(request),
      agent: agent.name,
      assistantId,
      input: body.input ?? {},
      ...(threadId === undefined ? {} : { threadId }),
      ...(body.run_id === undefined ? {} : { runId: body.run_id }),
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
      ...(body.config === undefined ? {} : { config: body.config }),
      ...(body.kwargs === undefined ? {} : { kwargs: body.kwargs }),
      ...(body.multitask_strategy === undefined ? {} : { multitaskStrategy: body.multitask_strategy }),
      ...(body.priority === undefined ? {} : { priority: body.priority }),
      createThread: body.if_not_exists === 'create',
    });
    deps.bus.notifyWork();
    return publicRun(run);
  };

  // Background runs answer at once with the pending run. 200, not 202: the
  // LangGraph SDK reads a 202 as an empty body.
  app.post('/runs', async (request) => create(request, undefined));
  app.post('/threads/:thread_id/runs', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    return create(request, thread_id);
  });

  app.get('/threads/:thread_id/runs', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const { limit } = parseWith(ListQuery, request.query, 'query');
    const runs = await listThreadRuns(deps.db, deps.tenantOf(request), thread_id, limit);
    return runs.map(publicRun);
  });

  app.get('/threads/:thread_id/runs/:run_id', async (request) => {
    const run = await findRun(request, deps);
    return publicRun(run);
  });

  app.get('/threads/:thread_id/runs/:run_id/stream', async (request, reply) => {
    const run = await findRun(request, deps);
    await streamRun(request, reply, deps, run);
  });
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

/**
 * Streams a run's events as SSE from the client's position (`Last-Event-ID`)
 * until the run's terminal event, then closes.
 */
async function streamRun(
  request: FastifyRequest,
  reply: FastifyReply,
  deps: GatewayDeps,
  run: Run,
): Promise<void> {
  const query = request.query as Record<string, unknown>;
  const lastEventId = parseLastEventId(request.headers['last-event-id'] ?? query.last_event_id);
  const abort = new AbortController();
  const onClose = () => abort.abort();
  request.raw.on('close', onClose);
  reply.raw.on('close', onClose);
  deps.shutdown.addEventListener('abort', onClose);
  reply.hijack();
  const sse = new SseWriter(reply.raw, {
    'content-location': `/threads/${run.thread_id}/runs/${run.run_id}`,
  });
  try {
    if (lastEventId === undefined) await sse.send('metadata', { run_id: run.run_id, attempt: run.attempt });
    // A finished run's events are all in the log. Following it live would wait forever for a
    // terminal event the client already has (a reconnect with Last-Event-ID after the end).
    const events = isTerminal(run.status)
      ? replayRun(deps, run, lastEventId ?? 0, abort.signal)
      : followThread({
          db: deps.db,
          bus: deps.bus,
          tenantId: run.tenant_id,
          threadId: run.thread_id,
          runId: run.run_id,
          afterSeq: lastEventId ?? 0,
          signal: abort.signal,
          runEnded: async () => {
            const current = await getRun(deps.db, run.tenant_id, run.run_id);
            return current === null || isTerminal(current.status);
          },
        });
    for await (const event of events) {
      await sse.sendEnvelope(event);
      if (abort.signal.aborted) break;
    }
  } catch (err) {
    if (!abort.signal.aborted) request.log.error({ err, run_id: run.run_id }, 'run stream failed');
  } finally {
    deps.shutdown.removeEventListener('abort', onClose);
    sse.end();
  }
}

/** Pages through a finished run's events after a position, then ends. */
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
