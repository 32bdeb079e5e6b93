import { describe, expect, it } from 'vitest';
import { HangarError } from '../errors.ts';
import { checkpointValue, jsonRoundTrip } from './serialize.ts';

function thrown(fn: () => unknown): HangarError {
  try {
    fn();
  } catch (err) {
    if (err instanceof HangarError) return err;
    throw err;
  }
  throw new Error('expected a HangarError, nothing was thrown');
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

class Money {
  constructor(readonly cents: number) {}
  toJSON() {
    return { amount: this.cents / 100 };
  }
}

describe('checkpointValue', () => {
  it.each([
    ['a string', 'text'],
    ['a number', 42.5],
    ['zero', 0],
    ['a boolean', false],
    ['null', null],
    ['an empty object', {}],
    ['an empty array', []],
    ['nested plain data', { a: [1, { b: 'c' }, null], d: { e: true } }],
  ])('returns %s unchanged in meaning', (_, value) => {
    expect(checkpointValue('s', value)).toEqual(value);
  });

  it('returns undefined for undefined (replayed as undefined too)', () => {
    expect(checkpointValue('s', undefined)).toBeUndefined();
  });

  it('returns a copy: later mutation of the original does not change what was checkpointed', () => {
    const original = { list: [1, 2] };
    const stored = checkpointValue('s', original) as { list: number[] };
    original.list.push(3);
    expect(stored).toEqual({ list: [1, 2] });
  });

  it('gives the first execution what a replay gets: Dates become ISO strings, toJSON is applied', () => {
    const at = new Date('2025-01-02T03:04:05.000Z');
    expect(checkpointValue('s', { at, price: new Money(1250) })).toEqual({
      at: '2025-01-02T03:04:05.000Z',
      price: { amount: 12.5 },
    });
  });

  it('drops undefined object fields and turns undefined array items into null, as JSON does', () => {
    expect(checkpointValue('s', { a: 1, b: undefined, c: [undefined, 2] })).toEqual({ a: 1, c: [null, 2] });
  });

  it('accepts objects without a prototype and an object referenced twice (not a cycle)', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { k: 'v' });
    const shared = { id: 1 };
    expect(checkpointValue('s', { bare, left: shared, right: shared, list: [shared, shared] })).toEqual({
      bare: { k: 'v' },
      left: { id: 1 },
      right: { id: 1 },
      list: [{ id: 1 }, { id: 1 }],
    });
  });

  const cycle = (() => {
    const a: Record<string, unknown> = { name: 'a' };
    a.children = [{ parent: a }];
    return a;
  })();

  it.each<[string, unknown, string]>([
    ['a function', { run: () => 1 }, 'a function at $.run'],
    ['a symbol', { s: Symbol('x') }, 'a symbol at $.s'],
    ['a bigint', { n: 1n }, 'a bigint at $.n'],
    ['NaN', { n: Number.NaN }, 'NaN at $.n'],
    ['Infinity', [1, Number.POSITIVE_INFINITY], 'Infinity at $[1]'],
    ['a Map', { m: new Map() }, 'a Map object at $.m'],
    ['a Set', new Set([1]), 'a Set object at $'],
    ['a class instance without toJSON', { p: new Point(1, 2) }, 'a Point object at $.p'],
    ['a cycle', cycle, 'a circular reference at $.children[0].parent'],
    ['a problem deep inside', { a: [{ b: { c: [0, () => 0] } }] }, 'a function at $.a[0].b.c[1]'],
    ['a top-level function', () => 1, 'a function at $'],
    // Postgres's jsonb cannot hold U+0000: the commit would fail on every attempt.
    [
      'a NUL character in a string',
      { page: 'bin\u0000ary' },
      'a NUL character (\\u0000) in the string at $.page',
    ],
    [
      'a NUL character in a key',
      { nested: { 'k\u0000': 1 } },
      'a NUL character (\\u0000) in a key at $.nested',
    ],
  ])('rejects %s with step_not_serializable naming the step and the path', (_, value, problem) => {
    const err = thrown(() => checkpointValue('fetch page', value));
    expect(err.code).toBe('step_not_serializable');
    expect(err.message).toBe(`step "fetch page" returned a value that cannot be stored as JSON: ${problem}`);
    expect(err.details).toEqual({ step: 'fetch page' });
    expect(err.retryable).toBe(false);
  });
});

describe('jsonRoundTrip', () => {
  it('starts the message with what the caller says and carries its details', () => {
    const err = thrown(() =>
      jsonRoundTrip("ctx.emit('custom') was given", { f: () => 0 }, { channel: 'custom' }),
    );
    expect(err.code).toBe('step_not_serializable');
    expect(err.message).toBe(
      "ctx.emit('custom') was given a value that cannot be stored as JSON: a function at $.f",
    );
    expect(err.details).toEqual({ channel: 'custom' });
  });

  it('round-trips plain values', () => {
    expect(jsonRoundTrip('x', { a: [1, 'two', { three: 3 }] })).toEqual({ a: [1, 'two', { three: 3 }] });
  });
});
