import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const HANGAR_BIN = fileURLToPath(new URL('../../bin/hangar.js', import.meta.url));

export interface HangarProcess {
  child: ChildProcess;
  /** Everything the process wrote so far (stdout + stderr). */
  output(): string;
  /** Resolves when the output matches `pattern` (rejects after `timeoutMs` or if the process exits). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Spawns the real `hangar` CLI (`hangar dev | worker | gateway | …`) as a child process. */
export function spawnHangar(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): HangarProcess {
  // HANGAR_CHILD_NODE_ARGS: extra node flags for the children, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`
  // to profile the workers of a bench (NODE_OPTIONS refuses those flags).
  const nodeArgs = process.env.HANGAR_CHILD_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? [];
  const child = spawn(process.execPath, [...nodeArgs, HANGAR_BIN, ...args], {
    cwd: options.cwd,
    env: { ...process.env, LOG_LEVEL: 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    out += chunk.toString();
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let exitedFlag = false;
  void exited.then(() => {
    exitedFlag = true;
    for (const l of listeners) l();
  });
  return {
    child,
    exited,
    output: () => out,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = out.match(pattern);
          if (match !== null) {
            cleanup();
            resolve(match);
          } else if (exitedFlag) {
            cleanup();
            reject(new Error(`process exited before printing ${pattern}; output:\n${out}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}; output:\n${out}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (!exitedFlag) child.kill(signal);
      return exited;
    },
  };
}
