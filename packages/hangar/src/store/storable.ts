/**
 * What Postgres refuses to store, checked before a write so bad input is a 4xx
 * naming the field rather than a failed statement: NUL characters (text and
 * jsonb) and unpaired UTF-16 surrogates (jsonb), and JSON nested deeper than a
 * bound (deep nesting also overflows recursive code on the way).
 */

/** Why Postgres would refuse a string (in text or jsonb), or null when it would not. */
export function unstorableText(value: string): string | null {
  if (value.includes('\u0000')) return 'must not contain NUL characters';
  if (/\p{Cs}/u.test(value)) return 'must not contain unpaired UTF-16 surrogates';
  return null;
}

/**
 * The first problem of a JSON value that Postgres would refuse, or that nests
 * deeper than `maxDepth`, as a path relative to the value and a message;
 * null when it is storable.
 *
 * @example
 * unstorableJson({ a: ['ok', 'bad\u0000'] }, 64); // { path: ['a', '1'], message: 'must not contain NUL characters' }
 */
export function unstorableJson(
  value: unknown,
  maxDepth: number,
  depth = 0,
): { path: string[]; message: string } | null {
  if (depth > maxDepth) return { path: [], message: `nests deeper than ${maxDepth} levels` };
  if (typeof value === 'string') {
    const problem = unstorableText(value);
    return problem === null ? null : { path: [], message: problem };
  }
  if (typeof value !== 'object' || value === null) return null;
  const entries: [string, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [String(i), v])
    : Object.entries(value);
  for (const [key, child] of entries) {
    const keyProblem = unstorableText(key);
    if (keyProblem !== null) return { path: [key], message: `field name ${keyProblem}` };
    const problem = unstorableJson(child, maxDepth, depth + 1);
    if (problem !== null) return { path: [key, ...problem.path], message: problem.message };
  }
  return null;
}
