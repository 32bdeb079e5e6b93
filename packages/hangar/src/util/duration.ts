/** A duration: milliseconds, or a string such as `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function toMs(duration: Duration, what = 'duration'): number {
  if (typeof duration === 'number') {
    if (!Number.isFinite(duration) || duration < 0)
      throw new TypeError(`${what} must be a non-negative number of ms`);
    return duration;
  }
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(duration);
  const unit = match?.[2];
  if (match === null || unit === undefined) {
    throw new TypeError(`${what} "${duration}" is not a duration such as "500ms", "30s", "5m", "2h" or "1d"`);
  }
  return Number(match[1]) * (UNITS[unit] ?? 1);
}
