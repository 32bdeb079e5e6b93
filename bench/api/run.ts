/**
 * The run API benchmark (`npm run bench:api`, `-- --quick` for a smoke run):
 * `POST /runs` → response against a real gateway process on the local
 * Postgres, next to two baselines measured by the same script:
 *
 * - **peer**: a bare Fastify process answering `POST /runs` with a constant
 *   (the HTTP + JSON floor of this machine and this load generator);
 * - **raw commit**: the write a create needs at minimum — one transaction
 *   inserting a thread row and a run row — on plain `pg` clients at the
 *   same concurrency (the Postgres floor).
 *
 * Two kinds of load: closed loop (N requests always in flight: the most
 * creates/s) and open loop at fixed rates, where latency is measured from
 * each request's *scheduled* send time, so a stall shows as latency instead of
 * silently lowering the rate (no coordinated omission).
 *
 * Writes bench/results/api.{json,md}.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createApiKey } from '../../packages/hangar/src/auth/repository.ts';
import { OwnCpu } from '../engine/cpu.ts';
import { createBenchDatabase } from '../engine/db.ts';
import { type LatencySummary, round, summarize } from '../engine/stats.ts';

const quick = process.argv.includes('--quick');
const URL_DB = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PHASE_S = quick ? 3 : 10;
const CONCURRENCY = quick ? [16] : [8, 32, 64];
const RATES = quick ? [500, 1000] : [250, 500, 1000, 1500, 2000, 2500];
const RESULTS = fileURLToPath(new URL('../results/', import.meta.url));
const started = Date.now();
const log = (msg: string) =>
  console.error(`[bench:api ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

interface Target {
  name: string;
  target: string;
  measured: number;
  unit: string;
  pass: boolean;
}

interface LoadResult {
  server: 'hangar' | 'peer' | 'raw-commit';
  load: string;
  offered_per_s: number | null;
  achieved_per_s: number;
  ok: number;
  errors: number;
  latency: LatencySummary;
  load_avg_1m: number;
  /** CPU per successful request: the server process, and the Postgres backends serving it (Hangar only). */
  cpu_ms_per_request?: { server: number; postgres: number };
}

function startServer(
  mode: 'hangar' | 'peer',
  env: NodeJS.ProcessEnv,
): Promise<{ port: number; child: ChildProcess }> {
  const profile =
    process.env.BENCH_API_PROFILE === '1' ? ['--cpu-prof', '--cpu-prof-dir=bench/results/profiles'] : [];
  const child = spawn(
    process.execPath,
    [...profile, '--import', 'tsx', fileURLToPath(new URL('./server.ts', import.meta.url)), mode],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line !== undefined) resolve({ port: (JSON.parse(line) as { port: number }).port, child });
    });
    child.on('exit', (code) => reject(new Error(`${mode} server exited with ${code}`)));
  });
}

/** One POST; resolves with the status (0 on a network error). */
function post(
  agent: http.Agent,
  port: number,
  headers: Record<string, string>,
  body: string,
): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        path: '/runs',
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...headers,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

const body = (n: number) => JSON.stringify({ assistant_id: 'bench', input: { n } });

async function closedLoop(
  server: LoadResult['server'],
  concurrency: number,
  send: (n: number) => Promise<boolean>,
): Promise<LoadResult> {
  const samples: number[] = [];
  let ok = 0;
  let errors = 0;
  let n = 0;
  const load = loadavg()[0] ?? 0;
  const end = performance.now() + PHASE_S * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        if (await send(n++)) ok++;
        else errors++;
        samples.push(performance.now() - t0);
      }
    }),
  );
  return {
    server,
    load: `closed loop, ${concurrency} in flight`,
    offered_per_s: null,
    achieved_per_s: round(ok / PHASE_S, 1),
    ok,
    errors,
    latency: summarize(samples),
    load_avg_1m: round(load, 2),
  };
}

async function openLoop(
  server: LoadResult['server'],
  rate: number,
  send: (n: number) => Promise<boolean>,
): Promise<LoadResult> {
  const samples: number[] = [];
  let ok = 0;
  let errors = 0;
  const total = rate * PHASE_S;
  const load = loadavg()[0] ?? 0;
  const t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const scheduled = t0 + (i * 1000) / rate;
    const wait = scheduled - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(
      send(i).then((good) => {
        if (good) ok++;
        else errors++;
        samples.push(performance.now() - scheduled);
      }),
    );
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - t0) / 1000;
  return {
    server,
    load: `open loop, ${rate}/s offered`,
    offered_per_s: rate,
    achieved_per_s: round(ok / elapsed, 1),
    ok,
    errors,
    latency: summarize(samples),
    load_avg_1m: round(load, 2),
  };
}

async function main(): Promise<void> {
  const db = await createBenchDatabase(URL_DB);
  const children: ChildProcess[] = [];
  const results: LoadResult[] = [];
  try {
    const key = await createApiKey(db.db, {
      tenantId: 'bench',
      name: 'bench',
      scopes: ['runs:write', 'runs:read'],
    });
    const hangar = await startServer('hangar', { DATABASE_URL: URL_DB, HANGAR_SCHEMA: db.schema });
    const peer = await startServer('peer', {});
    children.push(hangar.child, peer.child);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    const hangarSend = async (n: number) =>
      (await post(agent, hangar.port, { 'x-api-key': key.key }, body(n))) === 200;
    const peerSend = async (n: number) => (await post(agent, peer.port, {}, body(n))) === 200;

    // The raw write a stateless create needs: one transaction, a thread row and a run row.
    const pool = new pg.Pool({ connectionString: URL_DB, max: 10, options: `-c search_path=${db.schema}` });
    const rawSend = async (n: number) => {
      const client = await pool.connect();
      try {
        const thread = randomUUID();
        await client.query('BEGIN');
        await client.query(`INSERT INTO threads (thread_id, tenant_id) VALUES ($1, 'bench')`, [thread]);
        await client.query(
          `INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, agent, input) VALUES ($1, 'bench', $2, $3, 'bench', $4::jsonb)`,
          [randomUUID(), thread, randomUUID(), JSON.stringify({ n })],
        );
        await client.query('COMMIT');
        return true;
      } catch {
        await client.query('ROLLBACK').catch(() => {});
        return false;
      } finally {
        client.release();
      }
    };

    const cpu = new OwnCpu(db.db, () => (hangar.child.pid === undefined ? [] : [hangar.child.pid]));
    /** Runs a Hangar phase and records the CPU it cost the server and its Postgres backends. */
    const measured = async (phase: () => Promise<LoadResult>): Promise<LoadResult> => {
      const before = await cpu.sample();
      const result = await phase();
      const used = OwnCpu.diff(before, await cpu.sample());
      const per = Math.max(1, result.ok);
      return {
        ...result,
        cpu_ms_per_request: {
          server: round(used.workersMs / per, 3),
          postgres: round(used.postgresMs / per, 3),
        },
      };
    };

    // Warm up every path (JIT, prepared statements, connections).
    for (const send of [hangarSend, peerSend, rawSend]) await closedLoop('peer', 8, send);
    const reset = () => db.db.query('TRUNCATE runs, threads CASCADE');

    for (const c of CONCURRENCY) {
      await reset();
      log(`closed loop ${c}: hangar`);
      results.push(await measured(() => closedLoop('hangar', c, hangarSend)));
      log(`closed loop ${c}: peer`);
      results.push(await closedLoop('peer', c, peerSend));
      await reset();
      log(`closed loop ${c}: raw commit`);
      results.push(await closedLoop('raw-commit', Math.min(c, 10), rawSend));
    }
    for (const rate of RATES) {
      await reset();
      log(`open loop ${rate}/s: hangar`);
      results.push(await measured(() => openLoop('hangar', rate, hangarSend)));
      log(`open loop ${rate}/s: peer`);
      results.push(await openLoop('peer', rate, peerSend));
    }
    await pool.end();
    agent.destroy();

    const hangarClosed = results.filter((r) => r.server === 'hangar' && r.offered_per_s === null);
    const best = hangarClosed.reduce((a, b) => (b.achieved_per_s > a.achieved_per_s ? b : a));
    const at1000 = results.find((r) => r.server === 'hangar' && r.offered_per_s === 1000);
    const peerBest = Math.max(
      ...results.filter((r) => r.server === 'peer' && r.offered_per_s === null).map((r) => r.achieved_per_s),
    );
    const rawBest = Math.max(
      ...results.filter((r) => r.server === 'raw-commit').map((r) => r.achieved_per_s),
    );
    const targets: Target[] = [
      {
        name: 'creates/s (best closed loop)',
        target: '>= 2000',
        measured: best.achieved_per_s,
        unit: 'creates/s',
        pass: best.achieved_per_s >= 2000,
      },
      {
        name: 'p99 at 1000 creates/s offered',
        target: '<= 20 ms',
        measured: at1000?.latency.p99 ?? Number.NaN,
        unit: 'ms',
        pass: (at1000?.latency.p99 ?? Number.POSITIVE_INFINITY) <= 20 && (at1000?.errors ?? 1) === 0,
      },
    ];
    const report = {
      benchmark: 'api',
      command: `npm run bench:api${quick ? ' -- --quick' : ''}`,
      generated_at: new Date().toISOString(),
      machine: { cores: cpus().length, node: process.version, load_avg_at_start: loadavg() },
      settings: { phase_s: PHASE_S, concurrency: CONCURRENCY, rates: RATES, body: body(1) },
      ratios: {
        hangar_vs_peer: round(best.achieved_per_s / peerBest, 3),
        hangar_vs_raw_commit: round(best.achieved_per_s / rawBest, 3),
      },
      results,
      targets,
    };
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(`${RESULTS}api.json`, `${JSON.stringify(report, null, 2)}\n`);
    const md = [
      '# bench: run API (`POST /runs`)',
      '',
      `\`${report.command}\` on ${report.generated_at} (${cpus().length} cores, Node ${process.version}; load average at start ${loadavg()
        .map((l) => l.toFixed(1))
        .join(
          ' / ',
        )}). Phases of ${PHASE_S} s. Latency in ms; open-loop latency counts from each request's scheduled send time.`,
      '',
      '| server | load | achieved/s | errors | p50 | p90 | p99 | max | CPU ms/req (server + Postgres) | load avg |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...results.map(
        (r) =>
          `| ${r.server} | ${r.load} | ${r.achieved_per_s} | ${r.errors} | ${r.latency.p50} | ${r.latency.p90} | ${r.latency.p99} | ${r.latency.max} | ${r.cpu_ms_per_request === undefined ? '' : `${r.cpu_ms_per_request.server} + ${r.cpu_ms_per_request.postgres}`} | ${r.load_avg_1m} |`,
      ),
      '',
      `Ratios: best Hangar closed loop / best peer = ${report.ratios.hangar_vs_peer}; / best raw commit = ${report.ratios.hangar_vs_raw_commit}.`,
      '',
      '| target | wanted | measured | pass |',
      '| --- | --- | ---: | --- |',
      ...targets.map(
        (t) => `| ${t.name} | ${t.target} | ${t.measured} ${t.unit} | ${t.pass ? 'yes' : 'no'} |`,
      ),
      '',
    ].join('\n');
    writeFileSync(`${RESULTS}api.md`, md);
    console.log(md);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await db.dispose();
  }
}

await main();
