import type { FastifyInstance } from 'fastify';
import { HangarError } from '../../errors.ts';
import { sqlState, UNIQUE_VIOLATION } from '../../store/sql.ts';
import {
  copyThread,
  createThread,
  deleteThread,
  getThread,
  patchThreadMetadata,
  searchThreads,
  type Thread,
  type ThreadStateSnapshot,
  threadCheckpoint,
  threadHistory,
  updateThreadState,
} from '../../threads/repository.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith } from '../errors.ts';
import {
  ListQuery,
  ThreadCheckpointParams,
  ThreadCreateBody,
  ThreadHistoryBody,
  ThreadParams,
  ThreadPatchBody,
  ThreadSearchBody,
  ThreadStateUpdateBody,
} from '../schemas.ts';

function threadNotFound(threadId: string): HangarError {
  return new HangarError('not_found', `thread ${threadId} not found`, { details: { thread_id: threadId } });
}

/**
 * The SDK's `ThreadState` for one checkpoint. Hangar runs have no pending
 * nodes or tasks between runs, so `next` and `tasks` are always empty. A
 * thread with no checkpoint yet shows its values and a null checkpoint id.
 */
export function threadState(
  thread: Pick<Thread, 'thread_id' | 'values' | 'created_at'>,
  snapshot?: ThreadStateSnapshot,
) {
  const checkpoint = (checkpoint_id: string | null) => ({
    thread_id: thread.thread_id,
    checkpoint_ns: '',
    checkpoint_id,
  });
  return {
    values: snapshot?.values ?? thread.values,
    next: [],
    tasks: [],
    metadata: snapshot?.metadata ?? {},
    created_at: snapshot?.created_at ?? thread.created_at,
    checkpoint: checkpoint(snapshot?.checkpoint_id ?? null),
    parent_checkpoint: snapshot?.parent_checkpoint_id ? checkpoint(snapshot.parent_checkpoint_id) : null,
  };
}

/**
 * A thread's pending interrupts as the SDK's `ThreadState.tasks` (one task per
 * interrupted run, its id the run id) and `next` (the agents waiting).
 */
function interruptedTasks(thread: Pick<Thread, 'interrupts'>) {
  const entries = Object.entries(thread.interrupts);
  if (entries.length === 0) return {};
  return {
    next: entries.map(() => 'interrupt'),
    tasks: entries.map(([runId, interrupts]) => ({
      id: runId,
      name: 'interrupt',
      error: null,
      interrupts,
      checkpoint: null,
      state: null,
    })),
  };
}

export function registerThreadRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post('/threads', async (request) => {
    const body = parseWith(ThreadCreateBody, request.body ?? {}, '');
    const tenantId = deps.tenantOf(request);
    try {
      return await createThread(deps.db, {
        tenantId,
        ...(body.thread_id === undefined ? {} : { threadId: body.thread_id }),
        ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
      });
    } catch (err) {
      if (sqlState(err) !== UNIQUE_VIOLATION || body.thread_id === undefined) throw err;
      const existing = await getThread(deps.db, tenantId, body.thread_id);
      if (body.if_exists === 'do_nothing' && existing !== null) return existing;
      throw new HangarError('conflict', `thread ${body.thread_id} already exists`, {
        details: { thread_id: body.thread_id },
      });
    }
  });

  app.get('/threads/:thread_id', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const thread = await getThread(deps.db, deps.tenantOf(request), thread_id);
    if (thread === null) throw threadNotFound(thread_id);
    return thread;
  });

  app.get('/threads/:thread_id/state', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const tenantId = deps.tenantOf(request);
    const thread = await getThread(deps.db, tenantId, thread_id);
    if (thread === null) throw threadNotFound(thread_id);
    const [latest] = await threadHistory(deps.db, tenantId, thread_id, { limit: 1 });
    return { ...threadState(thread, latest), ...interruptedTasks(thread) };
  });

  app.get('/threads/:thread_id/state/:checkpoint_id', async (request) => {
    const { thread_id, checkpoint_id } = parseWith(ThreadCheckpointParams, request.params, 'path');
    const tenantId = deps.tenantOf(request);
    const thread = await getThread(deps.db, tenantId, thread_id);
    if (thread === null) throw threadNotFound(thread_id);
    const snapshot = await threadCheckpoint(deps.db, tenantId, thread_id, checkpoint_id);
    if (snapshot === null) {
      throw new HangarError('not_found', `checkpoint ${checkpoint_id} not found on thread ${thread_id}`, {
        details: { thread_id, checkpoint_id },
      });
    }
    return threadState(thread, snapshot);
  });

  app.get('/threads/:thread_id/history', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const { limit } = parseWith(ListQuery, request.query, 'query');
    const tenantId = deps.tenantOf(request);
    const thread = await getThread(deps.db, tenantId, thread_id);
    if (thread === null) throw threadNotFound(thread_id);
    const history = await threadHistory(deps.db, tenantId, thread_id, { limit });
    return history.map((snapshot) => threadState(thread, snapshot));
  });

  app.post('/threads/:thread_id/history', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const body = parseWith(ThreadHistoryBody, request.body ?? {}, '');
    const tenantId = deps.tenantOf(request);
    const thread = await getThread(deps.db, tenantId, thread_id);
    if (thread === null) throw threadNotFound(thread_id);
    const history = await threadHistory(deps.db, tenantId, thread_id, {
      limit: body.limit,
      ...(body.before === undefined ? {} : { before: body.before }),
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
    });
    return history.map((snapshot) => threadState(thread, snapshot));
  });

  app.post('/threads/search', async (request) => {
    const body = parseWith(ThreadSearchBody, request.body ?? {}, '');
    return searchThreads(deps.db, deps.tenantOf(request), {
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
      ...(body.values === undefined ? {} : { values: body.values }),
      ...(body.status === undefined ? {} : { status: body.status }),
      ...(body.ids === undefined ? {} : { ids: body.ids }),
      limit: body.limit,
      offset: body.offset,
      ...(body.sort_by === undefined ? {} : { sortBy: body.sort_by }),
      ...(body.sort_order === undefined ? {} : { sortOrder: body.sort_order }),
    });
  });

  app.patch('/threads/:thread_id', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const { metadata } = parseWith(ThreadPatchBody, request.body ?? {}, '');
    const thread = await patchThreadMetadata(deps.db, deps.tenantOf(request), thread_id, metadata);
    if (thread === null) throw threadNotFound(thread_id);
    return thread;
  });

  app.delete('/threads/:thread_id', async (request, reply) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    await deleteThread(deps.db, deps.tenantOf(request), thread_id);
    return reply.status(204).send();
  });

  app.post('/threads/:thread_id/state', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const body = parseWith(ThreadStateUpdateBody, request.body ?? {}, '');
    const { checkpoint_id } = await updateThreadState(deps.db, deps.tenantOf(request), thread_id, {
      values: body.values,
      ...(body.as_node === undefined ? {} : { asNode: body.as_node }),
    });
    return { checkpoint: { thread_id, checkpoint_ns: '', checkpoint_id } };
  });

  app.post('/threads/:thread_id/copy', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    return copyThread(deps.db, deps.tenantOf(request), thread_id);
  });
}
