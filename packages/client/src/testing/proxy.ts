import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP proxy the tests control, between the client and a real gateway: it
 * cuts live connections (a dropped network, a gateway that died under the
 * client), rewrites a request's first bytes, or swallows a response after the
 * server handled the request (the answer lost on the way back). Node-only:
 * tests use it, the client does not.
 */
export interface ProxyOptions {
  /** Rewrites the first chunk a client sends on a connection (its request line and headers). */
  rewriteRequest?: (head: string, connection: number) => string;
  /** Drop the server's answer on these connections (1-based) and close the client's socket instead. */
  swallowResponses?: (connection: number) => boolean;
}

export interface TcpProxy {
  url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** The first chunk of each connection's request, as sent by the client (before any rewrite). */
  readonly requests: string[];
  /** Destroys every open connection, both sides. */
  cut(): void;
  /**
   * Stops forwarding on every open connection without closing it: a
   * half-open connection, as a NAT or proxy that dropped it leaves behind.
   * New connections flow normally.
   */
  freeze(): void;
  /** Sends new connections to another server (a gateway restarted on another port). */
  retarget(target: string): void;
  close(): Promise<void>;
}

export async function startProxy(target: string, options: ProxyOptions = {}): Promise<TcpProxy> {
  let upstreamUrl = new URL(target);
  const open = new Set<Socket>();
  const frozen = new Set<Socket>();
  const requests: string[] = [];
  let connections = 0;
  const server: Server = createServer((client) => {
    const n = ++connections;
    const upstream = tcpConnect({ host: upstreamUrl.hostname, port: Number(upstreamUrl.port) });
    open.add(client);
    open.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    let first = true;
    client.on('data', (chunk: Buffer) => {
      if (frozen.has(client)) return;
      if (first) {
        first = false;
        const head = chunk.toString('latin1');
        requests.push(head);
        if (options.rewriteRequest !== undefined) {
          upstream.write(Buffer.from(options.rewriteRequest(head, n), 'latin1'));
          return;
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (frozen.has(client)) return;
      if (options.swallowResponses?.(n) === true) {
        drop();
        return;
      }
      client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    get connections() {
      return connections;
    },
    requests,
    cut() {
      for (const socket of open) socket.destroy();
      open.clear();
    },
    freeze() {
      for (const socket of open) frozen.add(socket);
    },
    retarget(next) {
      upstreamUrl = new URL(next);
    },
    close() {
      for (const socket of open) socket.destroy();
      frozen.clear();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
