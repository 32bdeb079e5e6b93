/**
 * Where an idle thread WebSocket's bytes go (`npx tsx bench/stream/socket-memory.ts [count]`,
 * run with NODE_OPTIONS=--expose-gc): a gateway in this process (test
 * Postgres schema, in-process bus, no worker), `count` (default 2000) idle
 * subscribed sockets opened from a child process, and the gateway's heap
 * growth per socket after full GCs. With `--snapshot`, a heap snapshot is
 * taken and summarized: bytes per socket by object kind (kinds with at least
 * one object per socket), and by owner of property/element backing stores.
 * Complements phase 4 of run.ts (RSS of a real gateway process).
 */
import { fork } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeHeapSnapshot } from 'node:v8';
import { startTestServer } from '../../packages/hangar/src/testing/server.ts';

const { values, positionals } = parseArgs({
  options: { snapshot: { type: 'boolean', default: false } },
  allowPositionals: true,
});
const count = Number(positionals[0] ?? 2000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with NODE_OPTIONS=--expose-gc');
const collect = gc;

const server = await startTestServer('postgres', [], { worker: false });
const res = await fetch(`${server.apiUrl}/threads`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: '{}',
});
const { thread_id } = (await res.json()) as { thread_id: string };
const memory = () => {
  collect();
  collect();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external + m.arrayBuffers, rss: m.rss };
};
await new Promise((resolve) => setTimeout(resolve, 300));
const before = memory();
const client = fork(fileURLToPath(new URL('./idle-sockets-client.mjs', import.meta.url)), [
  `${server.apiUrl.replace('http', 'ws')}/threads/${thread_id}/stream`,
  String(count),
]);
const { opened } = await new Promise<{ opened: number }>((resolve) =>
  client.once('message', (m) => resolve(m as { opened: number })),
);
await new Promise((resolve) => setTimeout(resolve, 1500));
const after = memory();
const per = (k: keyof typeof before) => Math.round((after[k] - before[k]) / opened);
console.log(
  JSON.stringify({
    sockets: opened,
    heap_bytes_per_socket: per('heap'),
    external_bytes_per_socket: per('external'),
    rss_bytes_per_socket: per('rss'),
  }),
);
if (values.snapshot)
  summarize(writeHeapSnapshot(join(tmpdir(), `hangar-sockets-${process.pid}.heapsnapshot`)));
client.send('stop');
await server.stop();
process.exit(0);

function summarize(file: string): void {
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  rmSync(file);
  const meta = snap.snapshot.meta;
  const nodeFields = meta.node_fields as string[];
  const edgeFields = meta.edge_fields as string[];
  const nodeTypes = meta.node_types[0] as string[];
  const edgeTypes = meta.edge_types[0] as string[];
  const nodes = snap.nodes as number[];
  const edges = snap.edges as number[];
  const strings = snap.strings as string[];
  const W = nodeFields.length;
  const EW = edgeFields.length;
  const [type, name, size, edgeCount] = ['type', 'name', 'self_size', 'edge_count'].map((f) =>
    nodeFields.indexOf(f),
  ) as [number, number, number, number];
  const [edgeType, edgeName, edgeTo] = ['type', 'name_or_index', 'to_node'].map((f) =>
    edgeFields.indexOf(f),
  ) as [number, number, number];
  const kinds = new Map<string, { n: number; bytes: number }>();
  const stores = new Map<string, { n: number; bytes: number }>();
  const add = (map: typeof kinds, key: string, bytes: number) => {
    const entry = map.get(key) ?? { n: 0, bytes: 0 };
    entry.n++;
    entry.bytes += bytes;
    map.set(key, entry);
  };
  let e = 0;
  for (let i = 0; i < nodes.length; i += W) {
    const kind = `${nodeTypes[nodes[i + type] as number]}:${(strings[nodes[i + name] as number] ?? '').slice(0, 50)}`;
    add(kinds, kind, nodes[i + size] as number);
    for (let k = 0; k < (nodes[i + edgeCount] as number); k++, e += EW) {
      if (edgeTypes[edges[e + edgeType] as number] !== 'internal') continue;
      const label = strings[edges[e + edgeName] as number];
      if (label !== 'properties' && label !== 'elements') continue;
      add(stores, `${kind}.${label}`, nodes[(edges[e + edgeTo] as number) + size] as number);
    }
  }
  const print = (title: string, map: typeof kinds) => {
    console.log(title);
    const rows = [...map].filter(([, v]) => v.n >= opened).sort((a, b) => b[1].bytes - a[1].bytes);
    for (const [key, v] of rows.slice(0, 20)) {
      console.log(`${(v.bytes / opened).toFixed(0).padStart(7)} B/socket ${String(v.n).padStart(8)}  ${key}`);
    }
  };
  print('by object kind (all objects of kinds with ≥ 1 per socket; not all are the sockets’):', kinds);
  print('property/element backing stores by owner:', stores);
}
