import { type Flags, UsageError } from './main.ts';

const TERMINAL = new Set(['success', 'error', 'cancelled', 'timeout', 'dead']);

/** `hangar run <agent> --input '<json>' [--follow]`: submit a run and print it or its events. */
export async function runClientCommand(flags: Flags): Promise<number> {
  const agent = flags.positionals[0];
  if (agent === undefined) throw new UsageError("usage: hangar run <agent> --input '<json>' [--follow]");
  const base = String(flags.values.url ?? process.env.HANGAR_URL ?? 'http://127.0.0.1:8123').replace(
    /\/$/,
    '',
  );
  // A keyed gateway (`hangar gateway`, `hangar dev --auth keys`) needs one: --api-key or HANGAR_API_KEY.
  const apiKey = flags.values['api-key'] ?? process.env.HANGAR_API_KEY;
  const auth: Record<string, string> =
    apiKey === undefined || apiKey === true ? {} : { 'x-api-key': String(apiKey) };
  let input: unknown = {};
  if (flags.values.input !== undefined) {
    try {
      input = JSON.parse(String(flags.values.input));
    } catch (err) {
      throw new UsageError(`--input is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const thread = flags.values.thread === undefined ? undefined : String(flags.values.thread);
  const path = thread === undefined ? '/runs' : `/threads/${encodeURIComponent(thread)}/runs`;
  const res = await request(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify({
      assistant_id: agent,
      input,
      ...(thread === undefined ? {} : { if_not_exists: 'create' }),
    }),
  });
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    process.stderr.write(
      `hangar: ${res.status} ${String(body.error ?? '')}: ${String(body.message ?? res.statusText)}\n`,
    );
    return 1;
  }
  const runId = String(body.run_id);
  const threadId = String(body.thread_id);
  if (flags.values.follow !== true) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`run ${runId} (thread ${threadId})\n`);
  const status = await follow(`${base}/threads/${threadId}/runs/${runId}/stream`, auth);
  const final = await request(`${base}/threads/${threadId}/runs/${runId}`, { headers: auth });
  const run = (await final.json()) as { status: string; output?: unknown; error?: { message?: string } };
  process.stdout.write(`status: ${run.status}\n`);
  if (run.status === 'success') process.stdout.write(`output: ${JSON.stringify(run.output)}\n`);
  if (run.error) process.stdout.write(`error: ${run.error.message ?? JSON.stringify(run.error)}\n`);
  return (status ?? run.status) === 'success' && run.status === 'success' ? 0 : 1;
}

async function request(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const origin = new URL(url).origin;
    throw new Error(
      `cannot reach a Hangar server at ${origin} (${(err as Error).cause ?? err}); start one with "npx hangar dev" or pass --url`,
    );
  }
}

/** Prints a run's SSE stream, reconnecting with Last-Event-ID if the connection drops. */
async function follow(url: string, auth: Record<string, string>): Promise<string | undefined> {
  let lastId: string | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const res = await fetch(url, {
        headers: lastId === undefined ? auth : { ...auth, 'last-event-id': lastId },
      });
      if (!res.ok || res.body === null) throw new Error(`stream answered ${res.status}`);
      let status: string | undefined;
      for await (const frame of sseFrames(res.body)) {
        if (frame.id !== undefined) lastId = frame.id;
        process.stdout.write(
          `${frame.id === undefined ? '' : `[${frame.id}] `}${frame.event} ${frame.data}\n`,
        );
        if (frame.event === 'lifecycle') {
          const data = JSON.parse(frame.data) as { terminal?: boolean; status?: string };
          if (data.terminal === true && data.status !== undefined && TERMINAL.has(data.status))
            status = data.status;
        }
      }
      if (status !== undefined) return status;
    } catch (err) {
      if (attempt === 19) throw err;
    }
    await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt) * Math.random()));
  }
  return undefined;
}

export interface SseFrame {
  id: string | undefined;
  event: string;
  data: string;
}

/** Parses an SSE byte stream into frames. */
export async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<SseFrame> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const raw = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf('\n\n');
      let id: string | undefined;
      let event = 'message';
      const data: string[] = [];
      for (const line of raw.split('\n')) {
        if (line.startsWith(':')) continue;
        const sep = line.indexOf(':');
        const field = sep < 0 ? line : line.slice(0, sep);
        const value = sep < 0 ? '' : line.slice(sep + 1).replace(/^ /, '');
        if (field === 'id') id = value;
        else if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) yield { id, event, data: data.join('\n') };
    }
  }
}
