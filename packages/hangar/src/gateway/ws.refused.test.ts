/**
 * A WebSocket upgrade refused by authentication (before the WebSocket plugin
 * sees it) gets its HTTP refusal, and its socket is closed: the gateway still
 * stops promptly afterwards.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestServer } from '../testing/server.ts';

describe('refused WebSocket upgrades', () => {
  it('answers 401 to a wrong key, closes the socket, and the gateway then stops', async () => {
    const server = await startTestServer('postgres', [], { gateway: { auth: 'keys' } });
    let stopped = false;
    try {
      const url = `${server.apiUrl.replace('http', 'ws')}/threads/${randomUUID()}/stream`;
      const ws = new WebSocket(url, ['hangar.v1', 'hangar.key.hgr_wrong']);
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        ws.once('unexpected-response', (_req, response) => resolve(response));
        ws.once('open', () => reject(new Error('the upgrade was accepted')));
        ws.once('error', reject);
      });
      expect(res.statusCode).toBe(401);
      // The server closes the connection (the client keeps its end open, as a leaked one would stay).
      const closed = await new Promise<boolean>((resolve) => {
        if (res.socket.destroyed) return resolve(true);
        const timer = setTimeout(() => resolve(false), 5_000);
        res.socket.once('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
        res.resume();
      });
      expect(closed, 'the server closed the refused connection').toBe(true);
      const stop = server.stop().then(() => {
        stopped = true;
      });
      await Promise.race([stop, new Promise((r) => setTimeout(r, 10_000))]);
      expect(stopped, 'the gateway stopped within 10 s').toBe(true);
    } finally {
      if (!stopped) await server.stop();
    }
  });
});
