import { HangarApiError } from './errors.ts';

/**
 * Requests to a gateway over the global `fetch` (or one passed in): the API
 * key as a header, JSON in and out, error bodies turned into HangarApiError.
 */
export interface HttpOptions {
  /** The gateway's base URL, e.g. `https://hangar.example.com` or `http://127.0.0.1:2024`. */
  baseUrl: string;
  /** A tenant API key (`hgr_…`), sent as `x-api-key`; none for `auth: none` gateways (`hangar dev`). */
  apiKey?: string;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** The fetch to use; the global one by default. */
  fetch?: typeof fetch;
}

export class Http {
  readonly baseUrl: string;
  readonly apiKey: string | undefined;
  private readonly headers: Record<string, string>;
  private readonly fetchImpl: typeof fetch;

  constructor(options: HttpOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.headers = options.headers ?? {};
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new Error('no fetch: pass options.fetch');
    // Bound: a browser's fetch throws "Illegal invocation" when called as a method of something else.
    this.fetchImpl = fetchImpl.bind(globalThis);
  }

  url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  /** Sends a request; a non-2xx answer throws HangarApiError. The response is the caller's to read. */
  async send(
    method: string,
    path: string,
    options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...this.headers, ...options.headers };
    if (this.apiKey !== undefined) headers['x-api-key'] = this.apiKey;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const response = await this.fetchImpl(this.url(path), {
      method,
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    if (!response.ok) throw await apiError(response);
    return response;
  }

  /** Sends a request and parses its JSON answer (undefined for an empty one). */
  async json<T>(
    method: string,
    path: string,
    options: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ): Promise<T> {
    const response = await this.send(method, path, options);
    const text = await response.text();
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }
}

/** The error a failed response carries (`{ error, message, details }`), or one made from its status. */
export async function apiError(response: Response): Promise<HangarApiError> {
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
  let body: unknown;
  try {
    body = JSON.parse(await response.text());
  } catch {
    body = undefined;
  }
  const record = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const code = typeof record.error === 'string' ? record.error : `http_${response.status}`;
  const message =
    typeof record.message === 'string' ? record.message : `${response.status} ${response.statusText}`;
  const details =
    typeof record.details === 'object' && record.details !== null
      ? (record.details as Record<string, unknown>)
      : undefined;
  return new HangarApiError(response.status, code, message, details, retryAfterMs);
}

/** `Retry-After` as seconds or an HTTP date, in ms from now. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
