import { HangarError } from '../errors.ts';

/**
 * Checks that a step result survives a JSON round trip unchanged in meaning,
 * and returns the round-tripped copy. The first execution gets the same value
 * a replay will get, so code after a step can't behave differently on resume.
 *
 * Rejected: functions, symbols, bigints, non-finite numbers, cycles, objects
 * JSON would silently flatten (Map, Set, class instances without `toJSON`),
 * and strings or keys containing U+0000, which Postgres's `jsonb` cannot store
 * (the commit would fail on every attempt and the run never end). Dates (which
 * have `toJSON`) become ISO strings on both paths.
 */
export function checkpointValue(stepName: string, value: unknown): unknown {
  return jsonRoundTrip(`step "${stepName}" returned`, value, { step: stepName });
}

/** Like checkpointValue for any value headed for the store; `what` starts the error message. */
export function jsonRoundTrip(what: string, value: unknown, details: Record<string, unknown> = {}): unknown {
  if (value === undefined) return undefined;
  const problem = findProblem(value, '$', new Set());
  if (problem !== null) {
    throw new HangarError(
      'step_not_serializable',
      `${what} a value that cannot be stored as JSON: ${problem}`,
      { details },
    );
  }
  return JSON.parse(JSON.stringify(value));
}

function findProblem(value: unknown, path: string, seen: Set<object>): string | null {
  switch (typeof value) {
    case 'string':
      return value.includes('\u0000') ? `a NUL character (\\u0000) in the string at ${path}` : null;
    case 'boolean':
    case 'undefined':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : `${value} at ${path}`;
    case 'bigint':
      return `a bigint at ${path}`;
    case 'function':
      return `a function at ${path}`;
    case 'symbol':
      return `a symbol at ${path}`;
  }
  if (value === null) return null;
  const obj = value as object;
  if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') return null;
  if (seen.has(obj)) return `a circular reference at ${path}`;
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      for (let i = 0; i < obj.length; i++) {
        const p = findProblem(obj[i], `${path}[${i}]`, seen);
        if (p !== null) return p;
      }
      return null;
    }
    const proto = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null) {
      return `a ${obj.constructor?.name ?? 'non-plain'} object at ${path}`;
    }
    for (const [key, child] of Object.entries(obj)) {
      if (key.includes('\u0000')) return `a NUL character (\\u0000) in a key at ${path}`;
      const p = findProblem(child, `${path}.${key}`, seen);
      if (p !== null) return p;
    }
    return null;
  } finally {
    seen.delete(obj);
  }
}
