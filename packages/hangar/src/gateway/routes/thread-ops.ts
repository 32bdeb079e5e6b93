import type { FastifyInstance } from 'fastify';
import { HangarError } from '../../errors.ts';
import { countThreads, patchLatestCheckpointMetadata, pruneThreads } from '../../threads/maintenance.ts';
import { getThread, threadCheckpoint } from '../../threads/repository.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith } from '../errors.ts';
import {
  ThreadCountBody,
  ThreadParams,
  ThreadPruneBody,
  ThreadStateAtBody,
  ThreadStatePatchBody,
} from '../schemas.ts';
import { threadState } from './threads.ts';

/**
 * The rest of the SDK's thread surface: count, prune, a checkpoint's state by
 * checkpoint object, and checkpoint metadata patches.
 */
export function registerThreadOpsRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post('/threads/count', async (request) => {
    const body = parseWith(ThreadCountBody, request.body ?? {}, '');
    return countThreads(deps.db, deps.tenantOf(request), {
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
      ...(body.values === undefined ? {} : { values: body.values }),
      ...(body.status === undefined ? {} : { status: body.status }),
    });
  });

  app.post('/threads/prune', async (request) => {
    const body = parseWith(ThreadPruneBody, request.body, '');
    const pruned = await pruneThreads(deps.db, deps.tenantOf(request), body.thread_ids, body.strategy);
    return { pruned_count: pruned };
  });

  app.post('/threads/:thread_id/state/checkpoint', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const { checkpoint } = parseWith(ThreadStateAtBody, request.body, '');
    const tenantId = deps.tenantOf(request);
    const thread = await getThread(deps.db, tenantId, thread_id);
    if (thread === null) {
      throw new HangarError('not_found', `thread ${thread_id} not found`, { details: { thread_id } });
    }
    const snapshot = await threadCheckpoint(deps.db, tenantId, thread_id, checkpoint.checkpoint_id);
    if (snapshot === null) {
      throw new HangarError(
        'not_found',
        `checkpoint ${checkpoint.checkpoint_id} not found on thread ${thread_id}`,
        { details: { thread_id, checkpoint_id: checkpoint.checkpoint_id } },
      );
    }
    return threadState(thread, snapshot);
  });

  app.patch('/threads/:thread_id/state', async (request, reply) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const { metadata } = parseWith(ThreadStatePatchBody, request.body, '');
    await patchLatestCheckpointMetadata(deps.db, deps.tenantOf(request), thread_id, metadata);
    return reply.status(204).send();
  });
}
