/**
 * One supervised child process of the local cluster: its output goes to a log
 * file, the recent part of it is kept in memory (for `waitFor` and failure
 * messages), and on Linux it dies with the process that started it (so a
 * SIGKILLed test runner or `npm run cluster` never leaves gateways, workers
 * or HAProxy behind).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

/** Bytes of output kept in memory per process (the full log is in its file). */
const TAIL_CHARS = 256 * 1024;

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SupervisedProcess {
  /** `gateway-0`, `worker-1`, `haproxy`. */
  name: string;
  pid: number;
  child: ChildProcess;
  logFile: string;
  /** The last output (stdout + stderr), up to 256 KB. */
  output(): string;
  /** Resolves when the output matches `pattern`; rejects after `timeoutMs` or if the process exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal (if still running) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<ChildExit>;
  exited: Promise<ChildExit>;
  isRunning(): boolean;
}

let setprivAvailable: boolean | undefined;

/**
 * `setpriv --pdeathsig` (util-linux) makes the kernel signal the child when
 * its parent dies, then execs the command, so the pid is the command's own.
 * Without it (not Linux), children are still stopped by `stop()` and by the
 * signal handlers of `npm run cluster`, just not after a SIGKILL of the parent.
 */
function pdeathsigPrefix(signal: NodeJS.Signals): string[] {
  if (process.platform !== 'linux') return [];
  setprivAvailable ??= spawnSync('setpriv', ['--help'], { stdio: 'ignore' }).status === 0;
  return setprivAvailable ? ['setpriv', `--pdeathsig=${signal}`, '--'] : [];
}

export function spawnSupervised(
  name: string,
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; logFile: string; deathSignal?: NodeJS.Signals },
): SupervisedProcess {
  const prefix = pdeathsigPrefix(options.deathSignal ?? 'SIGKILL');
  const [file, ...rest] = [...prefix, command, ...args];
  const child = spawn(file ?? command, rest, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: WriteStream = createWriteStream(options.logFile, { flags: 'a' });
  log.on('error', () => {}); // A log file that cannot be written must not take the cluster down.
  let tail = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    log.write(chunk);
    tail += chunk.toString();
    if (tail.length > TAIL_CHARS) tail = tail.slice(tail.length - TAIL_CHARS);
    for (const l of listeners) l();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  let running = true;
  const exited = new Promise<ChildExit>((resolve) => {
    child.once('error', (err) => {
      tail += `\n[cluster] could not start ${command}: ${err.message}\n`;
      running = false;
      log.end();
      resolve({ code: null, signal: null });
      for (const l of listeners) l();
    });
    child.once('exit', (code, signal) => {
      running = false;
      log.end();
      resolve({ code, signal });
      for (const l of listeners) l();
    });
  });
  return {
    name,
    pid: child.pid ?? -1,
    child,
    logFile: options.logFile,
    exited,
    output: () => tail,
    isRunning: () => running,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = tail.match(pattern);
          if (match !== null) {
            done();
            resolve(match);
          } else if (!running) {
            done();
            reject(new Error(`${name} exited before printing ${pattern}; output:\n${tail.slice(-4000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(
              `${name}: timed out after ${timeoutMs} ms waiting for ${pattern}; output:\n${tail.slice(-4000)}`,
            ),
          );
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    kill(signal = 'SIGTERM') {
      if (running) child.kill(signal);
      return exited;
    },
  };
}

/** SIGTERM, then SIGKILL after `graceMs` if the process is still there. */
export async function terminate(proc: SupervisedProcess, graceMs: number): Promise<ChildExit> {
  if (!proc.isRunning()) return proc.exited;
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  try {
    return await proc.kill('SIGTERM');
  } finally {
    clearTimeout(timer);
  }
}
