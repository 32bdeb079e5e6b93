import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HangarError } from '../../errors.ts';
import {
  type Approval,
  alreadyResolved,
  answerInterrupt,
  getApproval,
  listApprovals,
  pendingInterrupts,
  threadApprovals,
  threadHolder,
} from '../../hitl/repository.ts';
import { getRun } from '../../runs/repository.ts';
import type { Run } from '../../runs/types.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith } from '../errors.ts';
import { Uuid } from '../schemas.ts';

export const ApprovalParams = z.object({ interrupt_id: Uuid });

export const ApprovalListQuery = z.object({
  /** Default `pending`: the interrupts waiting for someone. */
  status: z.enum(['pending', 'answered', 'expired', 'cancelled', 'all']).default('pending'),
  agent: z.string().min(1).max(200).optional(),
  thread_id: Uuid.optional(),
  run_id: Uuid.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

/** An approval's answer; `ctx.interrupt` returns `{ decision, data, comment }` (absent ones as null). */
export const ApprovalAnswerBody = z.object({
  /** `approve`, `reject`, or any word the agent understands (`edit`, `escalate`, …). */
  decision: z
    .string()
    .regex(/^[A-Za-z][\w-]{0,63}$/, 'must be a word of letters, digits, "_" or "-" (e.g. approve, reject)'),
  /** Anything the agent needs with the decision (an edited draft, a chosen option). */
  data: z.unknown().optional(),
  comment: z.string().max(4000).optional(),
});

/** LangGraph's `command` on a run create: only `resume` is supported. */
const ResumeCommand = z.object({
  resume: z.unknown(),
  update: z
    .null({ error: 'command.update is not supported; update the state with POST /threads/{id}/state' })
    .optional(),
  goto: z.null({ error: 'command.goto is not supported by Hangar agents' }).optional(),
});

function principal(request: FastifyRequest, deps: GatewayDeps): string {
  return deps.principalOf?.(request) ?? 'api';
}

/**
 * Hangar's approvals API: the tenant's interrupts (`ctx.interrupt`), and the
 * answer that resumes a run. See docs/api.md, "Human in the loop".
 */
export function registerApprovalRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.get('/approvals', async (request) => {
    const query = parseWith(ApprovalListQuery, request.query, 'query');
    return listApprovals(deps.db, deps.tenantOf(request), {
      status: query.status,
      ...(query.agent === undefined ? {} : { agent: query.agent }),
      ...(query.thread_id === undefined ? {} : { threadId: query.thread_id }),
      ...(query.run_id === undefined ? {} : { runId: query.run_id }),
      limit: query.limit,
      offset: query.offset,
    });
  });

  app.get('/approvals/:interrupt_id', async (request) => {
    const { interrupt_id } = parseWith(ApprovalParams, request.params, 'path');
    const approval = await getApproval(deps.db, deps.tenantOf(request), interrupt_id);
    if (approval === null) throw notFound(interrupt_id);
    return approval;
  });

  // Exactly once: a second answer is 409 `conflict` with the first one in `details`.
  app.post('/approvals/:interrupt_id', async (request) => {
    const { interrupt_id } = parseWith(ApprovalParams, request.params, 'path');
    const body = parseWith(ApprovalAnswerBody, request.body ?? {}, '');
    const { approval, resumed } = await answerInterrupt(deps.db, deps.tenantOf(request), interrupt_id, {
      value: { decision: body.decision, data: body.data ?? null, comment: body.comment ?? null },
      decision: body.decision,
      comment: body.comment ?? null,
      by: principal(request, deps),
    });
    if (resumed) deps.bus.notifyWork();
    return approval;
  });
}

function notFound(interruptId: string): HangarError {
  return new HangarError('not_found', `interrupt ${interruptId} not found`, {
    details: { interrupt_id: interruptId },
  });
}

/**
 * LangGraph's resume: a run create on a thread with `command: { resume }`
 * answers the thread's pending interrupt with `resume` (as `ctx.interrupt`'s
 * value) instead of creating a run, and answers with the interrupted run
 * (`pending` once it has nothing left pending, else still `interrupted`):
 * join it, stream it or wait for it as for a new one. With several pending
 * interrupts (a Promise.all of `ctx.interrupt`), `resume` maps interrupt ids
 * to answers (`{ [interrupt_id]: value }`): some or all of them, in one
 * transaction (all are answered, or none). Nothing pending: 409 `conflict`
 * naming the state of the thread's run (a resume sent before its interrupt
 * exists is refused, not held: docs/api.md); an interrupt named that was
 * answered already: 409 with the first answer.
 */
export async function resumeWithCommand(
  deps: GatewayDeps,
  request: FastifyRequest,
  threadId: string | undefined,
  rawCommand: unknown,
): Promise<Run> {
  const command = parseWith(ResumeCommand, rawCommand, 'command');
  if (!Object.hasOwn(rawCommand as object, 'resume')) {
    throw new HangarError('invalid_request', 'command.resume is required', {
      details: { field: 'command.resume' },
    });
  }
  if (threadId === undefined) {
    throw new HangarError(
      'invalid_request',
      'command.resume answers an interrupted run on a thread: POST /threads/{thread_id}/runs',
      { details: { field: 'command' } },
    );
  }
  const tenantId = deps.tenantOf(request);
  const pending = await pendingInterrupts(deps.db, tenantId, threadId);
  // Interrupt ids the resume names that are not pending: answered, expired or cancelled already.
  const named = namedIds(command.resume).filter((id) => !pending.some((p) => p.interrupt_id === id));
  if (named.length > 0) {
    const [closed] = await threadApprovals(deps.db, tenantId, threadId, named);
    if (closed !== undefined) throw alreadyResolved(closed);
  }
  if (pending.length === 0) throw await nothingPending(deps, tenantId, threadId);
  const answers = answersFor(pending, command.resume);
  const by = principal(request, deps);
  const resumed = await deps.db.transaction(async (tx) => {
    let any = false;
    for (const [interrupt, value] of answers) {
      const object = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
      const answered = await answerInterrupt(tx, tenantId, interrupt.interrupt_id, {
        value,
        decision: typeof object.decision === 'string' ? object.decision.slice(0, 64) : null,
        comment: typeof object.comment === 'string' ? object.comment.slice(0, 4000) : null,
        by,
      });
      any ||= answered.resumed;
    }
    return any;
  });
  if (resumed) deps.bus.notifyWork();
  const runId = answers[0]?.[0].run_id ?? '';
  const run = await getRun(deps.db, tenantId, runId);
  if (run === null) throw new HangarError('conflict', `run ${runId} is gone`, { details: { run_id: runId } });
  return run;
}

/** The keys of a resume that look like interrupt ids (at most 100: a resume answers a few). */
function namedIds(resume: unknown): string[] {
  if (typeof resume !== 'object' || resume === null || Array.isArray(resume)) return [];
  return Object.keys(resume)
    .slice(0, 100)
    .filter((k) => Uuid.safeParse(k).success);
}

/** The 409 (or 404) of a resume with nothing pending, naming what the thread's run is doing. */
async function nothingPending(deps: GatewayDeps, tenantId: string, threadId: string): Promise<HangarError> {
  const holder = await threadHolder(deps.db, tenantId, threadId);
  if (holder === undefined) {
    return new HangarError('not_found', `thread ${threadId} not found`, { details: { thread_id: threadId } });
  }
  if (holder === null) {
    return new HangarError('conflict', `thread ${threadId} has no pending interrupt to resume`, {
      details: { thread_id: threadId },
    });
  }
  // An answer can't come too early by accident: an interrupt is visible only once its row exists.
  return new HangarError(
    'conflict',
    `thread ${threadId} has no pending interrupt to resume: its run ${holder.run_id} is ${holder.status}; ` +
      'resume once it is interrupted (the input.requested event carries the interrupt id)',
    { details: { thread_id: threadId, run_id: holder.run_id, status: holder.status } },
  );
}

/** Pairs `resume` with the interrupts it answers (see resumeWithCommand). */
function answersFor(pending: Approval[], resume: unknown): Array<[Approval, unknown]> {
  const byId = new Map(pending.map((p) => [p.interrupt_id, p]));
  if (typeof resume === 'object' && resume !== null && !Array.isArray(resume)) {
    const keys = Object.keys(resume);
    if (keys.length > 0 && keys.every((k) => byId.has(k))) {
      return keys.map((k) => [byId.get(k) as Approval, (resume as Record<string, unknown>)[k]]);
    }
  }
  const [only] = pending;
  if (pending.length === 1 && only !== undefined) return [[only, resume]];
  throw new HangarError(
    'conflict',
    `thread has ${pending.length} pending interrupts: resume with { [interrupt_id]: value } for each`,
    { details: { interrupt_ids: pending.map((p) => p.interrupt_id) } },
  );
}
