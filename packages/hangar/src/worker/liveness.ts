import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';

/**
 * A worker's proof of life that Postgres itself keeps: a session-level
 * advisory lock on a key of the worker's own, held on a connection of its
 * own for as long as the process lives. The worker stamps the key on every
 * run it claims (`runs.lease_lock`). A process that dies — SIGKILL, OOM kill,
 * a crash — closes its sockets; Postgres ends the session and drops the lock,
 * and the next sweep (every second, by any worker) re-queues the runs, instead
 * of leaving them until their leases expire. A machine that vanishes without
 * closing its connections is still caught by the lease.
 *
 * If the connection drops while the process lives, its runs are re-queued and
 * this worker's writes to them are fenced off (nothing is lost, the step in
 * flight runs again elsewhere); it reconnects and takes the lock again, and
 * claims made meanwhile carry no key (lease only).
 */
export class SessionLiveness {
  /** A random positive 62-bit key, as a decimal string (Postgres bigint). */
  readonly key = (randomBytes(8).readBigUInt64BE() >> 2n).toString();
  private client: pg.Client | undefined;
  private held = false;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly options: { connectionString: string; logger: Logger; retryMs?: number }) {}

  /** The key while the lock is held, else null (claims then rely on the lease alone). */
  heldKey(): string | null {
    return this.held ? this.key : null;
  }

  /** Takes the lock; if Postgres is unreachable now, keeps trying in the background. */
  async start(): Promise<void> {
    await this.connect().catch((err: unknown) =>
      this.options.logger.warn(
        { err },
        'liveness lock not taken yet; retrying (runs rely on their leases meanwhile)',
      ),
    );
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: 'hangar-worker-liveness',
      // Notice a dead peer on this idle connection within about a minute, not hours.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    try {
      await client.connect();
      await client.query('SELECT pg_advisory_lock($1::bigint)', [this.key]);
      this.client = client;
      this.held = true;
    } catch (err) {
      await client.end().catch(() => {});
      this.lost(client, err);
      throw err;
    }
  }

  private lost(client: pg.Client, err: unknown): void {
    if (this.client !== undefined && this.client !== client) return;
    if (this.held)
      this.options.logger.warn({ err }, 'liveness connection lost; its runs will resume elsewhere');
    this.held = false;
    this.client = undefined;
    if (this.stopped || this.retry !== undefined) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect().catch(() => {});
    }, this.options.retryMs ?? 1_000);
    this.retry.unref();
  }

  /** Releases the lock (closing the session): call after the worker handed its runs back. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    this.held = false;
    await client?.end().catch(() => {});
  }
}
