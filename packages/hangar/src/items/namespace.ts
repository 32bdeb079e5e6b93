/**
 * Namespaces of the long-term store. A namespace is a list of labels
 * (`['users', 'u-42', 'prefs']`); it is stored as the labels joined by `.`,
 * which is why a label may not contain one (the SDK refuses that too), and why
 * a namespace prefix is a plain text prefix that an index can serve.
 */

import { unstorableJson as unstorableJsonAt } from '../store/storable.ts';

/** Bounds that keep one item, and the SQL built from a pattern, small. */
export const STORE_LIMITS = {
  maxDepth: 20,
  maxLabelLength: 256,
  /**
   * The namespace (labels joined by '.') and the key are each capped in UTF-8
   * bytes: both sit in the primary key's btree, whose entries Postgres limits
   * to about 2.7 kB, and random text does not compress.
   */
  maxNamespaceBytes: 1024,
  maxKeyBytes: 1024,
  maxValueBytes: 256 * 1024,
  /** Nesting depth of a value or a filter value (Postgres's own JSON parser recurses). */
  maxJsonDepth: 64,
  maxFilterFields: 32,
  maxPageSize: 1000,
} as const;

/** In a prefix or suffix pattern, this label matches any one label. */
export const WILDCARD = '*';

export function joinNamespace(labels: readonly string[]): string {
  return labels.join('.');
}

export function splitNamespace(joined: string): string[] {
  return joined.split('.');
}

/** Why Postgres would refuse a string (NUL, unpaired surrogate), or null. */
export { unstorableText } from '../store/storable.ts';

/** The first part of an item value Postgres would refuse, or that nests deeper than the store allows. */
export function unstorableJson(value: unknown): { path: string[]; message: string } | null {
  return unstorableJsonAt(value, STORE_LIMITS.maxJsonDepth);
}

/** Collects positional parameters while a statement is built. */
export class SqlParams {
  readonly values: unknown[] = [];

  /** Adds a value; returns its placeholder (`$n`). */
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Escapes the characters that are special in a Postgres (ARE) regular expression. */
function escapeRegex(text: string): string {
  return text.replace(/[\\^$.|?*+()[\]{}]/g, (c) => `\\${c}`);
}

/**
 * A SQL condition on `column` (a joined namespace): its labels start with
 * `labels` (`prefix`) or end with them (`suffix`), label by label, so
 * `['a']` matches `a` and `a.b` but not `ab`. A `*` label matches any one
 * label. Without a wildcard a prefix is a `LIKE 'a.b.%'` the prefix index serves.
 *
 * @example
 * const p = new SqlParams();
 * namespaceCondition('namespace', ['users', '*', 'prefs'], 'prefix', p);
 * // "namespace ~ $1" with $1 = '^users\.[^.]+\.prefs(\.|$)'
 */
export function namespaceCondition(
  column: string,
  labels: readonly string[],
  mode: 'prefix' | 'suffix',
  params: SqlParams,
): string {
  if (labels.length === 0) return 'TRUE';
  if (!labels.includes(WILDCARD)) {
    const joined = joinNamespace(labels);
    const like = mode === 'prefix' ? `${escapeLike(joined)}.%` : `%.${escapeLike(joined)}`;
    return `(${column} = ${params.add(joined)} OR ${column} LIKE ${params.add(like)})`;
  }
  const body = labels.map((l) => (l === WILDCARD ? '[^.]+' : escapeRegex(l))).join('\\.');
  const regex = mode === 'prefix' ? `^${body}(\\.|$)` : `(^|\\.)${body}$`;
  return `${column} ~ ${params.add(regex)}`;
}
