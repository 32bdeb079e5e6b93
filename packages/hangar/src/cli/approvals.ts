import { call, fail } from './http.ts';
import { type Flags, UsageError } from './main.ts';

export const APPROVALS_HELP = `  hangar approvals list [--status pending|answered|expired|cancelled|all] [--agent <name>]
                        [--thread <id>] [--json]
  hangar approve <interrupt_id> [--data '<json>'] [--comment <text>]
  hangar reject  <interrupt_id> [--data '<json>'] [--comment <text>]
      [--url http://127.0.0.1:8123] [--api-key <key>]   (or HANGAR_URL, HANGAR_API_KEY)
                  Human in the loop, through a gateway: the interrupts runs wait on (ctx.interrupt),
                  and their answer ({ decision: approve | reject, data, comment }), recorded with
                  the API key's principal. Exactly once: answering twice exits 1 naming the first.`;

type Command = 'approvals' | 'approve' | 'reject';

/** `hangar approvals list`, `hangar approve <id>`, `hangar reject <id>` against a gateway. */
export async function runApprovalsCommand(command: Command, flags: Flags): Promise<number> {
  const base = String(flags.values.url ?? process.env.HANGAR_URL ?? 'http://127.0.0.1:8123').replace(
    /\/$/,
    '',
  );
  const apiKey = flags.values['api-key'] ?? process.env.HANGAR_API_KEY;
  const auth: Record<string, string> =
    apiKey === undefined || apiKey === true ? {} : { 'x-api-key': String(apiKey) };
  if (command === 'approvals') {
    const [sub] = flags.positionals;
    if (sub !== 'list') {
      throw new UsageError(
        `${sub === undefined ? 'missing approvals command' : `unknown approvals command "${sub}"`}; use "hangar approvals list"`,
      );
    }
    const query = new URLSearchParams({ limit: '1000' });
    for (const [flag, param] of [
      ['status', 'status'],
      ['agent', 'agent'],
      ['thread', 'thread_id'],
    ] as const) {
      const value = flags.values[flag];
      if (typeof value === 'string') query.set(param, value);
    }
    const { status, body } = await call(`${base}/approvals?${query}`, { headers: auth });
    if (status !== 200) return fail(status, body);
    const approvals = body as Array<Record<string, unknown>>;
    if (flags.values.json === true) {
      process.stdout.write(`${JSON.stringify(approvals)}\n`);
      return 0;
    }
    if (approvals.length === 0) process.stdout.write('hangar: no approvals\n');
    for (const a of approvals) {
      const payload = JSON.stringify(a.payload);
      process.stdout.write(
        `${a.interrupt_id}  ${a.status}  ${a.agent}  run ${a.run_id}  ${a.created_at}  ` +
          `${payload.length > 120 ? `${payload.slice(0, 117)}...` : payload}\n`,
      );
    }
    return 0;
  }
  const id = flags.positionals[0];
  if (id === undefined) throw new UsageError(`usage: hangar ${command} <interrupt_id> [--data '<json>']`);
  let data: unknown;
  if (flags.values.data !== undefined) {
    try {
      data = JSON.parse(String(flags.values.data));
    } catch (err) {
      throw new UsageError(`--data is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const comment = flags.values.comment;
  const decision = command === 'approve' ? 'approve' : 'reject';
  const { status, body } = await call(`${base}/approvals/${encodeURIComponent(id)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify({
      decision,
      ...(data === undefined ? {} : { data }),
      ...(typeof comment === 'string' ? { comment } : {}),
    }),
  });
  if (status !== 200) return fail(status, body);
  const answered = body as Record<string, unknown>;
  process.stdout.write(
    `hangar: ${decision === 'approve' ? 'approved' : 'rejected'} ${answered.interrupt_id}; run ${answered.run_id} resumes\n`,
  );
  return 0;
}
