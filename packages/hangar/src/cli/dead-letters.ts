import { call, fail } from './http.ts';
import { type Flags, UsageError } from './main.ts';

export const DEAD_LETTERS_HELP = `  hangar dead-letters list [--agent <name>] [--thread <id>] [--json]
  hangar dead-letters inspect <run_id> [--json]
  hangar dead-letters redrive <run_id> [--input '<json>'] [--state '<json object>']
  hangar dead-letters discard <run_id>
      [--url http://127.0.0.1:8123] [--api-key <key>]   (or HANGAR_URL, HANGAR_API_KEY)
                  Runs that ended dead (retries exhausted, or a worker that died in every attempt
                  up to HANGAR_MAX_RUN_ATTEMPTS), through a gateway: what killed them, then a redrive
                  (resumes from the last checkpoint, optionally with a fixed input or a state patch)
                  or a discard (acknowledged, kept for audit).`;

const SUBCOMMANDS = ['list', 'inspect', 'redrive', 'discard'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];

/** `hangar dead-letters list | inspect | redrive | discard` against a gateway. */
export async function runDeadLettersCommand(flags: Flags): Promise<number> {
  const [sub, id] = flags.positionals;
  if (!SUBCOMMANDS.includes(sub as Subcommand)) {
    throw new UsageError(
      `${sub === undefined ? 'missing dead-letters command' : `unknown dead-letters command "${sub}"`}; ` +
        `use one of: ${SUBCOMMANDS.join(', ')}`,
    );
  }
  const base = String(flags.values.url ?? process.env.HANGAR_URL ?? 'http://127.0.0.1:8123').replace(
    /\/$/,
    '',
  );
  const apiKey = flags.values['api-key'] ?? process.env.HANGAR_API_KEY;
  const headers: Record<string, string> =
    apiKey === undefined || apiKey === true ? {} : { 'x-api-key': String(apiKey) };
  if (sub !== 'redrive' && (flags.values.input !== undefined || flags.values.state !== undefined)) {
    throw new UsageError(`--input and --state go with "hangar dead-letters redrive", not ${sub}`);
  }
  if (sub === 'list') return list(base, headers, flags);
  if (id === undefined) throw new UsageError(`usage: hangar dead-letters ${sub} <run_id>`);
  const path = `${base}/dead-letters/${encodeURIComponent(id)}`;
  if (sub === 'inspect') {
    const { status, body } = await call(path, { headers });
    if (status !== 200) return fail(status, body);
    process.stdout.write(flags.values.json === true ? `${JSON.stringify(body)}\n` : describe(body as Detail));
    return 0;
  }
  const patch: Record<string, unknown> = {};
  if (sub === 'redrive') {
    if (flags.values.input !== undefined) patch.input = jsonFlag(flags, 'input');
    if (flags.values.state !== undefined) {
      const state = jsonFlag(flags, 'state');
      if (typeof state !== 'object' || state === null || Array.isArray(state)) {
        throw new UsageError(
          '--state must be a JSON object, merged into the state (e.g. \'{"retries": 0}\')',
        );
      }
      patch.state = state;
    }
  }
  const { status, body } = await call(`${path}/${sub}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(patch),
  });
  if (status !== 200) return fail(status, body);
  if (sub === 'discard') {
    process.stdout.write(`hangar: discarded run ${id}; it stays readable with inspect\n`);
    return 0;
  }
  const { redrive } = body as { redrive: { queued: boolean } };
  process.stdout.write(
    `hangar: redrove run ${id}; it resumes from its last checkpoint` +
      `${redrive.queued ? ' once its thread is free (queued behind the thread’s run)' : ''}\n`,
  );
  return 0;
}

async function list(base: string, headers: Record<string, string>, flags: Flags): Promise<number> {
  const query = new URLSearchParams({ limit: '1000' });
  for (const [flag, param] of [
    ['agent', 'agent'],
    ['thread', 'thread_id'],
  ] as const) {
    const value = flags.values[flag];
    if (typeof value === 'string') query.set(param, value);
  }
  const { status, body } = await call(`${base}/dead-letters?${query}`, { headers });
  if (status !== 200) return fail(status, body);
  const letters = body as Array<Record<string, unknown>>;
  if (flags.values.json === true) {
    process.stdout.write(`${JSON.stringify(letters)}\n`);
    return 0;
  }
  if (letters.length === 0) process.stdout.write('hangar: no dead letters\n');
  for (const l of letters) {
    const error = (l.error ?? {}) as { code?: unknown; message?: unknown };
    const message = String(error.message ?? '');
    process.stdout.write(
      `${l.run_id}  ${l.agent}  thread ${l.thread_id}  ${l.finished_at}  ${String(error.code ?? '')}: ` +
        `${message.length > 100 ? `${message.slice(0, 97)}...` : message}\n`,
    );
  }
  return 0;
}

interface Detail {
  run: { run_id: string; agent: string; thread_id: string; status: string; finished_at: string | null };
  error: { code?: string; message?: string } | null;
  attempts: number;
  steps: Array<{ index: number; name: string; status: string; attempt: number; error: unknown }>;
  checkpoint: { checkpoint_id: string; created_at: string } | null;
  redrives: Array<{ redriven_by: string; redriven_at: string; input_changed: boolean; state: unknown }>;
}

/** `inspect` for people: what died, where, and what a redrive would resume from. */
function describe(d: Detail): string {
  const lines = [
    `run ${d.run.run_id}  ${d.run.agent}  thread ${d.run.thread_id}  status ${d.run.status}  ${d.run.finished_at ?? ''}`,
    `error: ${d.error?.code ?? '-'}: ${d.error?.message ?? ''}`,
    `attempts: ${d.attempts}`,
    'steps:',
    ...(d.steps.length === 0 ? ['  (none recorded)'] : []),
    ...d.steps.map(
      (s) =>
        `  #${s.index} ${s.name}  ${s.status}  attempt ${s.attempt}` +
        `${s.error === null || s.error === undefined ? '' : `  ${JSON.stringify(s.error)}`}`,
    ),
    `last checkpoint: ${d.checkpoint === null ? 'none' : `${d.checkpoint.checkpoint_id} at ${d.checkpoint.created_at}`}`,
    ...d.redrives.map(
      (r) =>
        `redriven by ${r.redriven_by} at ${r.redriven_at}` +
        `${r.input_changed ? ', input replaced' : ''}${r.state === null ? '' : `, state patched ${JSON.stringify(r.state)}`}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

function jsonFlag(flags: Flags, name: 'input' | 'state'): unknown {
  try {
    return JSON.parse(String(flags.values[name]));
  } catch (err) {
    throw new UsageError(`--${name} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}
