/**
 * The HTTP API's answers to bad input, against a real `hangar dev`: a user
 * error is a clear 4xx naming what was wrong, in the one JSON error shape; a
 * 5xx is a bug, so no request here may produce one.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type ApiResponse,
  api,
  Cleanup,
  createRun,
  readStream,
  type Server,
  seededDataDir,
  startDev,
  waitForTerminal,
} from './helpers.ts';

const cleanup = new Cleanup();
let server: Server;

beforeAll(async () => {
  server = await startDev(cleanup, { dataDir: await seededDataDir(cleanup) });
}, 90_000);
afterAll(async () => {
  // Nothing the tests sent may have been logged as a server-side failure.
  const output = server?.proc.output() ?? '';
  await cleanup.run();
  expect(output).not.toMatch(/request failed|run stream failed/);
});

interface ErrorBody {
  error: string;
  message: string;
  details?: Record<string, unknown>;
}

/** A request that must be answered with `status` and the API's error shape. */
async function expectError(
  response: Promise<ApiResponse<ErrorBody>>,
  status: number,
  code: string,
): Promise<ErrorBody> {
  const res = await response;
  expect(res.status, res.text).toBe(status);
  expect(res.body).toMatchObject({ error: code, message: expect.any(String) });
  expect(Object.keys(res.body).sort()).toEqual(
    res.body.details === undefined ? ['error', 'message'] : ['details', 'error', 'message'],
  );
  expect(res.text).not.toMatch(/\n\s+at /);
  return res.body;
}

describe('run creation', () => {
  test('an unknown agent is a 404 that lists the known agents', async () => {
    const body = await expectError(
      api(server.url, 'POST', '/runs', { assistant_id: 'nope', input: {} }),
      404,
      'agent_not_found',
    );
    expect(body.message).toContain('"nope"');
    expect(body.message).toContain('greeting');
    expect(body.details).toMatchObject({ assistant_id: 'nope' });
    expect(body.details?.known_agents).toEqual(
      expect.arrayContaining(['chatty', 'counter', 'fails', 'greeting', 'sleeper', 'steps']),
    );
  });

  test('input failing the agent schema is a 422 naming the path', async () => {
    const missing = await expectError(
      api(server.url, 'POST', '/runs', { assistant_id: 'greeting', input: {} }),
      422,
      'input_invalid',
    );
    expect(missing.message).toContain('input.name');
    expect(missing.details?.issues).toEqual([expect.objectContaining({ path: 'input.name' })]);

    const wrongType = await expectError(
      api(server.url, 'POST', '/runs', { assistant_id: 'greeting', input: { name: 'Ada', times: 'x' } }),
      422,
      'input_invalid',
    );
    expect(wrongType.message).toContain('input.times');

    // No input at all is validated too (as `{}`).
    const absent = await expectError(
      api(server.url, 'POST', '/runs', { assistant_id: 'greeting' }),
      422,
      'input_invalid',
    );
    expect(absent.message).toContain('input.name');
  });

  test('a body field of the wrong type is a 400 naming the field', async () => {
    const body = await expectError(
      api(server.url, 'POST', '/runs', { assistant_id: 42, input: {} }),
      400,
      'invalid_request',
    );
    expect(body.message).toContain('assistant_id');
    const notObject = await expectError(api(server.url, 'POST', '/runs', '[1,2]'), 400, 'invalid_request');
    expect(notObject.message).toContain('invalid request');
  });

  test('metadata, config and kwargs over 64 KiB are a 400 naming the field', async () => {
    const big = { blob: 'x'.repeat(70 * 1024) };
    for (const field of ['metadata', 'config', 'kwargs']) {
      const body = await expectError(
        api(server.url, 'POST', '/runs', { assistant_id: 'greeting', input: { name: 'Ada' }, [field]: big }),
        400,
        'invalid_request',
      );
      expect(body.message).toContain(field);
      expect(body.message).toContain('64 KiB');
    }
    const thread = await expectError(
      api(server.url, 'POST', '/threads', { metadata: big }),
      400,
      'invalid_request',
    );
    expect(thread.message).toContain('metadata');
  });

  test('malformed JSON is a 400 invalid_json', async () => {
    await expectError(api(server.url, 'POST', '/runs', '{"assistant_id": "greeting",'), 400, 'invalid_json');
    await expectError(api(server.url, 'POST', '/threads', '{nope}'), 400, 'invalid_json');
  });

  test('a body over 1 MiB is a 413 body_too_large', async () => {
    const big = JSON.stringify({ assistant_id: 'greeting', input: { name: 'x'.repeat(1024 * 1024 + 10) } });
    const body = await expectError(api(server.url, 'POST', '/runs', big), 413, 'body_too_large');
    expect(body.details).toEqual({ limit_bytes: 1024 * 1024 });
  });

  test('a body that is not application/json is a 415', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
      const body = await expectError(
        api(server.url, 'POST', '/runs', '{"assistant_id":"greeting","input":{"name":"A"}}', {
          'content-type': type,
        }),
        415,
        'unsupported_media_type',
      );
      expect(body.message).toContain('application/json');
    }
  });
});

describe('threads', () => {
  test('a malformed thread id is a 400 naming the field', async () => {
    const state = await expectError(
      api(server.url, 'GET', '/threads/not-a-uuid/state'),
      400,
      'invalid_request',
    );
    expect(state.message).toContain('thread_id');
    const runs = await expectError(
      api(server.url, 'POST', '/threads/not-a-uuid/runs', { assistant_id: 'greeting', input: { name: 'A' } }),
      400,
      'invalid_request',
    );
    expect(runs.message).toContain('thread_id');
    const created = await expectError(
      api(server.url, 'POST', '/threads', { thread_id: 'not-a-uuid' }),
      400,
      'invalid_request',
    );
    expect(created.message).toContain('thread_id');
    const run = await expectError(
      api(server.url, 'GET', '/threads/00000000-0000-4000-8000-000000000000/runs/zzz'),
      400,
      'invalid_request',
    );
    expect(run.message).toContain('run_id');
  });

  test('an unknown thread or run is a 404 naming it', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    const body = await expectError(api(server.url, 'GET', `/threads/${id}/state`), 404, 'not_found');
    expect(body.details).toEqual({ thread_id: id });
    await expectError(
      api(server.url, 'POST', `/threads/${id}/runs`, { assistant_id: 'greeting', input: { name: 'A' } }),
      404,
      'not_found',
    );
    await expectError(api(server.url, 'GET', `/threads/${id}/runs/${id}/stream`), 404, 'not_found');
    await expectError(api(server.url, 'GET', '/no/such/route'), 404, 'not_found');
  });
});

describe('runs that fail and streams that resume', () => {
  test('an agent that throws ends the run in error with type and message, and no stack', async () => {
    const run = await createRun(server.url, 'fails', {});
    const view = await waitForTerminal(server.url, run);
    expect(view.status).toBe('error');
    expect(view.error).toEqual({
      code: 'agent_error',
      type: 'InventoryError',
      message: 'warehouse 7 is on fire',
    });
    const raw = await api(server.url, 'GET', `/threads/${run.thread_id}/runs/${run.run_id}`);
    expect(raw.text).not.toMatch(/stack|\n\s+at |\.ts:\d+/);

    const frames = await readStream(server.url, run);
    const last = frames[frames.length - 1];
    expect(last?.event).toBe('lifecycle');
    expect(JSON.parse(last?.data ?? '{}')).toMatchObject({
      status: 'error',
      terminal: true,
      error: { type: 'InventoryError', message: 'warehouse 7 is on fire' },
    });
    expect(frames.map((f) => f.data).join('\n')).not.toMatch(/stack|\n\s+at |\.ts:\d+/);
  });

  test('an SSE stream dropped mid-run resumes from Last-Event-ID with no repeated or missing ids', async () => {
    const run = await createRun(server.url, 'chatty', { count: 20, gapMs: 40 });
    const head = await readStream(server.url, run, { stopAfter: 5 });
    const headIds = head.filter((f) => f.id !== undefined).map((f) => Number(f.id));
    expect(headIds).toHaveLength(5);
    const lastId = String(headIds[headIds.length - 1]);

    const tail = await readStream(server.url, run, { lastEventId: lastId });
    expect(tail.some((f) => f.event === 'metadata')).toBe(false);
    const tailIds = tail.filter((f) => f.id !== undefined).map((f) => Number(f.id));
    const ids = [...headIds, ...tailIds];
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBe((ids[i - 1] ?? 0) + 1);
    expect(JSON.parse(tail[tail.length - 1]?.data ?? '{}')).toMatchObject({
      status: 'success',
      terminal: true,
    });

    // A full replay of the finished run has exactly the same ids and payloads.
    const replay = await readStream(server.url, run);
    const all = [...head, ...tail].filter((f) => f.id !== undefined);
    // (Compared parsed: the live path and the Postgres log may order an object's keys differently.)
    const parsed = (frames: typeof all) => frames.map((f) => ({ ...f, data: JSON.parse(f.data) as unknown }));
    expect(parsed(replay.filter((f) => f.id !== undefined))).toEqual(parsed(all));
    const ticks = all.filter((f) => f.event === 'custom').map((f) => (JSON.parse(f.data) as { i: number }).i);
    expect(ticks).toEqual(Array.from({ length: 20 }, (_, i) => i));

    // Resuming from the last id of a finished run yields nothing and ends.
    const after = await readStream(server.url, run, {
      lastEventId: String(ids[ids.length - 1]),
      timeoutMs: 5_000,
    });
    expect(after.filter((f) => f.id !== undefined)).toEqual([]);
  });
});
