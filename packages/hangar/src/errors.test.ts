import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, HangarError, toRunError } from './errors.ts';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

/** Rows of docs/errors.md tables: code → the cells after it. */
function documentedCodes(): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of doc.split('\n')) {
    const match = /^\| `([a-z_]+)`\s*\|(.*)\|$/.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) {
      rows.set(
        match[1],
        match[2].split('|').map((c) => c.trim()),
      );
    }
  }
  return rows;
}

describe('error codes', () => {
  it('docs/errors.md documents exactly the codes in ERROR_CODES, with their status and retry meaning', () => {
    const documented = documentedCodes();
    expect([...documented.keys()].sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      const cells = documented.get(code) ?? [];
      if (info.kind === 'api') {
        expect(cells[0], `HTTP status of ${code}`).toBe(String(info.http));
        expect(cells[1], `retry meaning of ${code}`).toBe(info.retryable ? 'yes' : 'no');
      } else {
        expect(cells[0], `retry meaning of ${code}`).toBe(info.retryable ? 'yes' : 'no');
      }
    }
  });

  it('serializes to the one API error shape', () => {
    const err = new HangarError('not_found', 'run x not found', { details: { run_id: 'x' } });
    expect(err.httpStatus).toBe(404);
    expect(JSON.parse(JSON.stringify(err))).toEqual({
      error: 'not_found',
      message: 'run x not found',
      details: { run_id: 'x' },
    });
    expect(new HangarError('conflict', 'busy').toJSON()).toEqual({ error: 'conflict', message: 'busy' });
  });

  it('records a run error with type and message, never a stack', () => {
    class QuotaError extends Error {
      override name = 'QuotaError';
    }
    const record = toRunError(new QuotaError('quota exceeded'));
    expect(record).toEqual({ code: 'agent_error', type: 'QuotaError', message: 'quota exceeded' });
    expect(JSON.stringify(record)).not.toContain('at ');
    expect(toRunError('plain string')).toEqual({
      code: 'agent_error',
      type: 'string',
      message: 'plain string',
    });
  });
});
