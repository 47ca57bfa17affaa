// A TCP relay in front of a real server (redis-server), for what a client sees in a failover:
//   - silence(): the connections open now stop relaying, both ways, without closing: a Redis pod
//     deleted in a failover (its IP answers nothing, no reset comes) or a NAT that dropped the flow;
//   - routeTo(port): connections opened from now on reach another server, as a Sentinel-aware
//     client or a Service finds the new primary, while the connections already open stay where they
//     were (each connection of a client finds its primary on its own).
// Each connection remembers whether the client has sent a given command (`sent(/wait/)`), so a test
// can silence one connection of a client and not the others.
import * as net from 'node:net';

interface Relayed {
  silent: boolean;
  /** what the client has sent so far (its first 64 KiB), to tell its connections apart */
  sent: string;
  a: net.Socket;
  b: net.Socket;
}

export interface TcpRelay {
  /** redis://127.0.0.1:PORT */
  url: string;
  /** connections opened so far (open or closed) */
  connections(): number;
  /** the open connections, or those whose client has sent something `sentMatching` matches, go silent; new ones are relayed */
  silence(sentMatching?: RegExp): number;
  /** connections opened from now on reach this port */
  routeTo(port: number): void;
  close(): void;
}

export async function startTcpRelay(port: number): Promise<TcpRelay> {
  const open = new Set<Relayed>();
  let target = port;
  let opened = 0;
  const server = net.createServer((a) => {
    opened++;
    const b = net.connect(target, '127.0.0.1');
    const c: Relayed = { silent: false, sent: '', a, b };
    open.add(c);
    a.on('data', (d) => {
      if (c.sent.length < 65_536) c.sent += d.toString('latin1');
      if (!c.silent) b.write(d);
    });
    b.on('data', (d) => void (c.silent || a.write(d)));
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
    const gone = () => {
      open.delete(c);
      a.destroy();
      b.destroy();
    };
    a.on('close', gone);
    b.on('close', gone);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => opened,
    silence: (sentMatching) => {
      let n = 0;
      for (const c of open) {
        if (sentMatching && !sentMatching.test(c.sent)) continue;
        c.silent = true;
        n++;
      }
      return n;
    },
    routeTo: (p) => void (target = p),
    close: () => {
      for (const c of open) (c.a.destroy(), c.b.destroy());
      server.close();
    },
  };
}
