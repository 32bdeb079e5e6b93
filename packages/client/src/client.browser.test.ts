import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { defineAgent } from 'hangar';
import { startTestServer, type TestServer } from 'hangar/testing';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApiKey } from '../../hangar/src/auth/repository.ts';
import { HangarClient, type StreamEvent } from './index.ts';

/**
 * The client in a real browser (headless Chromium): bundled for the browser
 * (a Node-only import would fail the bundle), served from the gateway's own
 * origin (the page is intercepted, so no CORS is involved), authenticating
 * with an API key — a header over fetch/SSE, the subprotocol over
 * WebSocket — and streaming a real run over both transports.
 */
const CHROMIUM = '/usr/bin/chromium';

const chatty = defineAgent({
  name: 'chatty',
  input: z.object({ count: z.number().int().min(1).max(200), gapMs: z.number().int().min(0).max(1000) }),
  async run(ctx, input) {
    for (let i = 0; i < input.count; i++) {
      await ctx.step(`tick-${i}`, async () => {
        await ctx.emit('custom', { i });
        await new Promise((r) => setTimeout(r, input.gapMs));
        return i;
      });
    }
    return { ticks: input.count };
  },
});

/** What the page reports of one stream. */
interface PageResult {
  runId: string;
  threadId: string;
  seqs: number[];
  channels: string[];
  last: unknown;
}

type ClientModule = typeof import('./index.ts');

describe('client in Chromium', () => {
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let apiKey: string;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: install it (apt-get install -y chromium; .ci/run does)`,
      );
    }
    const bundled = await build({
      stdin: {
        contents: "import * as hangar from './index.ts'; (globalThis as any).hangar = hangar;",
        loader: 'ts',
        resolveDir: fileURLToPath(new URL('.', import.meta.url)),
      },
      bundle: true,
      format: 'iife',
      platform: 'browser',
      target: 'es2022',
      write: false,
    });
    const script = bundled.outputFiles[0]?.text ?? '';
    server = await startTestServer('postgres', [chatty], {
      worker: { pollMs: 50 },
      gateway: { auth: 'keys' },
    });
    apiKey = (
      await createApiKey(server.store.db, {
        tenantId: 'browser',
        name: 'page',
        scopes: ['runs:read', 'runs:write'],
      })
    ).key;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await browser.newPage();
    // A real page of the gateway's origin (`/ok`), so same-origin rules apply as for an app it serves.
    // (A page fulfilled by interception has no network address, and Chromium's local-network
    // checks then block its WebSockets to 127.0.0.1.)
    await page.goto(`${server.apiUrl}/ok`);
    await page.addScriptTag({ content: script });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** The run's events as Node reads them from the log (same key). */
  const logSeqs = async (threadId: string, runId: string, channels?: string[]) => {
    const node = new HangarClient({ baseUrl: server.apiUrl, apiKey });
    const seqs: number[] = [];
    for await (const item of node.streamRun(threadId, runId)) {
      if (item.type === 'event' && (channels === undefined || channels.includes(item.channel)))
        seqs.push(item.seq);
    }
    return seqs;
  };

  it('creates a run and streams it over SSE with the key in a header', async () => {
    const result = await page.evaluate(async (key): Promise<PageResult> => {
      // In the page (its origin is the gateway's; the Node types have no `location`).
      const page = globalThis as unknown as { hangar: ClientModule; location: { origin: string } };
      const { HangarClient } = page.hangar;
      const client = new HangarClient({ baseUrl: page.location.origin, apiKey: key });
      const thread = await client.createThread();
      const run = await client.createRun(thread.thread_id, {
        assistant_id: 'chatty',
        input: { count: 10, gapMs: 10 },
      });
      const events: StreamEvent[] = [];
      for await (const item of client.streamRun(run.thread_id, run.run_id))
        if (item.type === 'event') events.push(item);
      return {
        runId: run.run_id,
        threadId: run.thread_id,
        seqs: events.map((e) => e.seq),
        channels: events.map((e) => e.channel),
        last: events.at(-1)?.data,
      };
    }, apiKey);
    expect(result.channels.filter((c) => c === 'custom')).toHaveLength(10);
    expect(result.last).toMatchObject({ status: 'success', terminal: true });
    expect(result.seqs).toEqual(await logSeqs(result.threadId, result.runId));
  });

  it('follows the thread over the browser WebSocket, authenticated by subprotocol', async () => {
    const result = await page.evaluate(async (key): Promise<PageResult & { protocol: boolean }> => {
      // In the page (its origin is the gateway's; the Node types have no `location`).
      const page = globalThis as unknown as { hangar: ClientModule; location: { origin: string } };
      const { HangarClient } = page.hangar;
      const client = new HangarClient({ baseUrl: page.location.origin, apiKey: key });
      const thread = await client.createThread();
      const stream = client.streamThread(thread.thread_id, {
        channels: ['custom', 'lifecycle'],
        since: 0,
        transport: 'websocket',
      });
      const run = await client.createRun(thread.thread_id, {
        assistant_id: 'chatty',
        input: { count: 10, gapMs: 10 },
      });
      const events: StreamEvent[] = [];
      for await (const item of stream) {
        if (item.type !== 'event') continue;
        events.push(item);
        const data = item.data as { terminal?: boolean };
        if (item.runId === run.run_id && item.channel === 'lifecycle' && data.terminal === true) break;
      }
      return {
        runId: run.run_id,
        threadId: run.thread_id,
        seqs: events.map((e) => e.seq),
        channels: events.map((e) => e.channel),
        last: events.at(-1)?.data,
        protocol: typeof WebSocket === 'function',
      };
    }, apiKey);
    expect(result.protocol).toBe(true);
    expect(result.channels.filter((c) => c === 'custom')).toHaveLength(10);
    expect(result.last).toMatchObject({ event: 'completed', terminal: true });
    expect(result.seqs).toEqual(await logSeqs(result.threadId, result.runId, ['custom', 'lifecycle']));
  });

  it('a refusal ends the stream with its status, without endless retries: a wrong key, an unknown thread', async () => {
    const failures = await page.evaluate(async (key) => {
      // In the page (its origin is the gateway's; the Node types have no `location`).
      const page = globalThis as unknown as { hangar: ClientModule; location: { origin: string } };
      const { HangarClient } = page.hangar;
      const id = '00000000-0000-4000-8000-000000000000';
      const attempts = [
        { transport: 'sse', apiKey: 'hgr_not-a-key' },
        { transport: 'sse', apiKey: key },
        { transport: 'websocket', apiKey: 'hgr_not-a-key' },
        { transport: 'websocket', apiKey: key },
      ] as const;
      const codes: string[] = [];
      for (const { transport, apiKey } of attempts) {
        const client = new HangarClient({ baseUrl: page.location.origin, apiKey });
        try {
          for await (const _ of client.streamThread(id, { channels: ['lifecycle'], transport })) break;
        } catch (err) {
          codes.push(`${transport}:${(err as { status?: number }).status}`);
        }
      }
      return codes;
    }, apiKey);
    expect(failures).toEqual(['sse:401', 'sse:404', 'websocket:401', 'websocket:404']);
  });
});
