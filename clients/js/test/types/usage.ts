// Compiled (not run) by `npm run typecheck`: the declarations must accept
// the ways the README and the tests use the client, and reject misuse.

import { connect, Client, HydrogenError, MAX_PAYLOAD, type Stats, type HydrogenErrorCode } from '@hydrogen-mq/client';

async function use(): Promise<void> {
  const c: Client = await connect('127.0.0.1:1337', { timeout: 5000, credential: 'token', tls: { ca: 'PEM', servername: 'broker' } });
  await c.send('hello');
  await c.send(new Uint8Array(MAX_PAYLOAD));
  const p: Uint8Array = await c.receive({ timeout: 100 });
  const s: Stats = await c.stats(0.5);
  const cores: number = s.resources.cpuPerCore.length + s.upTime + s.resources.ram.bytesUsed;
  const extra: unknown = s.extra['protocol_errors'];
  c.on('message', (m: Uint8Array) => m.length).on('close', (r: HydrogenError) => {
    const code: HydrogenErrorCode = r.code;
    return [code, r.reason, r.wsCode];
  });
  for await (const m of c) m.byteLength;
  const id: string | null = c.identity;
  const ended: HydrogenError | null = c.closeReason;
  await c.close();
  const w = await connect('ws://127.0.0.1:8080/');
  if (w.remote.transport === 'ws') w.remote.url.toUpperCase();
  void [p, cores, extra, id, ended];
}

async function misuse(c: Client): Promise<void> {
  // @ts-expect-error a number is not a payload
  await c.send(42);
  // @ts-expect-error the span is a number
  await c.stats('1');
  // @ts-expect-error no such event
  c.on('data', () => {});
  // @ts-expect-error no such option
  await connect('h:1', { credentials: 'x' });
}

void use;
void misuse;
