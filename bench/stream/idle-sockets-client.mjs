// Child process of bench/stream/socket-memory.ts: opens `count` thread
// WebSockets, subscribes each (waiting for the answer), reports, and holds
// them until told to go.
import WebSocket from 'ws';

const [url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const sockets = [];
let opened = 0;
for (let batch = 0; batch < count; batch += 200) {
  await Promise.all(
    Array.from(
      { length: Math.min(200, count - batch) },
      (_, k) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url, ['hangar.v1']);
          sockets.push(ws);
          ws.once('open', () => {
            const params = { channels: ['custom'] };
            ws.send(JSON.stringify({ id: batch + k + 1, method: 'subscription.subscribe', params }));
            ws.once('message', () => {
              opened++;
              resolve();
            });
          });
          ws.once('error', reject);
        }),
    ),
  );
}
process.send?.({ opened });
process.on('message', () => {
  for (const ws of sockets) ws.terminate();
  process.exit(0);
});
