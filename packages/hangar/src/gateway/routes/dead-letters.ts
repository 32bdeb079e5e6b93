import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HangarError } from '../../errors.ts';
import {
  discardRun,
  getDeadLetter,
  listDeadLetters,
  type RedriveRequest,
  redriveRun,
} from '../../runs/dead-letters.ts';
import { getRun } from '../../runs/repository.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith, zodError } from '../errors.ts';
import { Uuid } from '../schemas.ts';

export const DeadLetterParams = z.object({ run_id: Uuid });

export const DeadLetterListQuery = z.object({
  agent: z.string().min(1).max(200).optional(),
  thread_id: Uuid.optional(),
  /** `true`: discarded dead letters too (default: only those waiting for someone). */
  include_discarded: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

/** A redrive's patches: both optional (a bare redrive resumes the run as it was). */
export const RedriveBody = z.strictObject({
  /** Replaces the run's input; checked against the agent's input schema (422 naming the path). */
  input: z.unknown().optional(),
  /** Shallow-merged into the state the run resumes from, as `POST /threads/{id}/state` merges. */
  state: z.record(z.string(), z.unknown()).optional(),
});

function principal(request: FastifyRequest, deps: GatewayDeps): string {
  return deps.principalOf?.(request) ?? 'api';
}

/**
 * Hangar's dead-letter API: the tenant's `dead` runs, what killed them, and
 * the redrive or discard that settles each one (runs/dead-letters.ts). See
 * docs/api.md, "Dead letters".
 */
export function registerDeadLetterRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/dead-letters', async (request) => {
    const query = parseWith(DeadLetterListQuery, request.query, 'query');
    return listDeadLetters(deps.db, deps.tenantOf(request), {
      ...(query.agent === undefined ? {} : { agent: query.agent }),
      ...(query.thread_id === undefined ? {} : { threadId: query.thread_id }),
      includeDiscarded: query.include_discarded,
      limit: query.limit,
      offset: query.offset,
    });
  });

  app.get('/dead-letters/:run_id', async (request) => {
    const { run_id } = parseWith(DeadLetterParams, request.params, 'path');
    return getDeadLetter(deps.db, deps.tenantOf(request), run_id);
  });

  // Exactly once: of concurrent redrives one wins, the others get 409 naming the run's new status.
  app.post('/dead-letters/:run_id/redrive', async (request) => {
    const { run_id } = parseWith(DeadLetterParams, request.params, 'path');
    const body = parseWith(RedriveBody, request.body ?? {}, '');
    const tenantId = deps.tenantOf(request);
    const redrive: RedriveRequest = { by: principal(request, deps) };
    if (body.state !== undefined) redrive.state = body.state;
    if (Object.hasOwn(body, 'input')) {
      // The agent the run belongs to, as configured now: a fixed input must pass today's schema.
      const run = await getRun(deps.db, tenantId, run_id);
      if (run === null) {
        throw new HangarError('not_found', `run ${run_id} not found`, { details: { run_id } });
      }
      const agent = deps.registry.agentForGraph(run.agent, 'agent');
      const input = agent.input.safeParse(body.input);
      if (!input.success) throw zodError(input.error, 'input', 'input_invalid');
      redrive.input = body.input;
    }
    const { run, redrive: recorded, events } = await redriveRun(deps.db, tenantId, run_id, redrive);
    if (events.length > 0) deps.bus.publishEvents(run.thread_id, events);
    if (!recorded.queued) deps.bus.notifyWork();
    return { run, redrive: recorded };
  });

  app.post('/dead-letters/:run_id/discard', async (request) => {
    const { run_id } = parseWith(DeadLetterParams, request.params, 'path');
    return discardRun(deps.db, deps.tenantOf(request), run_id, principal(request, deps));
  });
}
