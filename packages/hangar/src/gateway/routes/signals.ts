import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { sendSignal } from '../../hitl/signals.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith } from '../errors.ts';
import { ThreadParams } from '../schemas.ts';

/** An external event for `ctx.waitForEvent(name, { match })` on the thread. */
export const ThreadEventBody = z.object({
  name: z.string().min(1).max(200),
  /** What `ctx.waitForEvent` returns; `match` is compared with it. */
  payload: z.unknown().optional(),
});

/**
 * `POST /threads/{thread_id}/events`: delivers an event to the thread. A run
 * waiting for it (`ctx.waitForEvent`) resumes; otherwise it is kept until a
 * wait on the thread matches it. Each event is consumed at most once.
 */
export function registerSignalRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post('/threads/:thread_id/events', async (request) => {
    const { thread_id } = parseWith(ThreadParams, request.params, 'path');
    const body = parseWith(ThreadEventBody, request.body ?? {}, '');
    const sent = await sendSignal(deps.db, deps.tenantOf(request), thread_id, {
      name: body.name,
      payload: body.payload ?? null,
    });
    if (sent.consumed_by !== null) deps.bus.notifyWork();
    return sent;
  });
}
