// Child process of bench/api.ts: `clients` concurrent keep-alive HTTP clients (Node's fetch) hitting one URL
// for `seconds`. IPC: parent sends {url, token, clients, seconds}; child answers {latenciesMs, errors, seconds}.
process.once('message', async (m: { url: string; token: string; clients: number; seconds: number }) => {
  const latenciesMs: number[] = [];
  let errors = 0;
  const started = performance.now();
  const until = started + m.seconds * 1000;
  await Promise.all(
    Array.from({ length: m.clients }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        try {
          const res = await fetch(m.url, { headers: { authorization: `Bearer ${m.token}` } });
          await res.arrayBuffer();
          if (res.status !== 200) errors++;
          else latenciesMs.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  process.send!({ latenciesMs, errors, seconds: (performance.now() - started) / 1000 });
});
