/** What the CLI's API commands share: one call to a Hangar server, and how a refusal is printed. */

/** Calls the server; a server that can't be reached is an error saying which URL to fix. */
export async function call(url: string, init: RequestInit): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new Error(
      `cannot reach a Hangar server at ${new URL(url).origin} (${(err as Error).cause ?? err}); pass --url`,
    );
  }
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

/** Prints the API's error (`<status> <code>: <message>`) and returns the exit code. */
export function fail(status: number, body: unknown): number {
  const error = (body ?? {}) as { error?: unknown; message?: unknown };
  process.stderr.write(`hangar: ${status} ${String(error.error ?? '')}: ${String(error.message ?? '')}\n`);
  return 1;
}
