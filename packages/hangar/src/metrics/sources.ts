import type { RedisBus } from '../bus/redis.ts';
import type { createGateway } from '../gateway/app.ts';
import type { BreakerRegistry } from '../worker/breakers.ts';
import type { Worker } from '../worker/worker.ts';
import { family, type MetricSource } from './metrics.ts';

/** A worker's occupancy: runs executing, capacity free per resource, claims paused for memory. */
export function workerMetrics(worker: Worker): MetricSource {
  return {
    collect: () => [
      ...family('hangar_worker_runs_active', 'gauge', 'Runs this worker is executing.', [
        { value: worker.activeRuns },
      ]),
      ...family(
        'hangar_worker_capacity',
        'gauge',
        'What the worker has, per resource (slots, browser, ...).',
        Object.entries(worker.capacity).map(([resource, value]) => ({ labels: { resource }, value })),
      ),
      ...family(
        'hangar_worker_capacity_free',
        'gauge',
        'Capacity not taken by running runs, per resource.',
        Object.entries(worker.freeCapacity()).map(([resource, value]) => ({ labels: { resource }, value })),
      ),
      ...family(
        'hangar_worker_claims_paused',
        'gauge',
        '1 while the worker claims nothing because its memory is above HANGAR_WORKER_MAX_RSS_MB.',
        [{ value: worker.claimsPaused ? 1 : 0 }],
      ),
    ],
  };
}

const BREAKER_STATES = ['closed', 'open', 'half_open'] as const;

/** Circuit breakers of this process: one sample per breaker and state, 1 for the current one. */
export function breakerMetrics(breakers: BreakerRegistry): MetricSource {
  return {
    collect: () =>
      family(
        'hangar_breaker_state',
        'gauge',
        'Circuit breaker state (1 for the current state) per LLM model and named tool.',
        breakers
          .snapshot()
          .flatMap(({ name, state }) =>
            BREAKER_STATES.map((s) => ({ labels: { breaker: name, state: s }, value: s === state ? 1 : 0 })),
          ),
      ),
  };
}

/** The Redis event plane's publishes from this process. */
export function redisBusMetrics(bus: RedisBus): MetricSource {
  return {
    collect: () => {
      const stats = bus.stats;
      return [
        ...family('hangar_redis_events_published_total', 'counter', 'Events published to Redis.', [
          { value: stats.published },
        ]),
        ...family(
          'hangar_redis_events_dropped_total',
          'counter',
          'Events not published (Redis down or too many in flight); readers get them from Postgres.',
          [{ value: stats.dropped }],
        ),
        ...family(
          'hangar_redis_events_fenced_total',
          'counter',
          'Publishes refused because a newer attempt of the run had published.',
          [{ value: stats.fenced }],
        ),
      ];
    },
  };
}

/** A gateway's open thread streams. */
export function gatewayMetrics(gateway: Pick<ReturnType<typeof createGateway>, 'openStreams'>): MetricSource {
  return {
    collect: () =>
      family(
        'hangar_gateway_streams_open',
        'gauge',
        'Thread streams (SSE and WebSocket) open on this gateway.',
        [{ value: gateway.openStreams() }],
      ),
  };
}
