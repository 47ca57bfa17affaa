// Tunnelling proxies on loopback, as a kubeconfig's `proxy-url` names them: an HTTP proxy that
// answers CONNECT (http://) and a SOCKS5 proxy without authentication (socks5://). Each pipes the
// tunnel to its target and records the targets asked for ("host:port"), so a test can tell its
// client went through it. Nothing else: no plain proxied requests, no authentication.
import * as http from 'node:http';
import * as net from 'node:net';

export interface TunnelProxy {
  /** http://127.0.0.1:PORT or socks5://127.0.0.1:PORT */
  url: string;
  /** the targets tunnelled to so far */
  targets: string[];
  close(): void;
}

function pipeBoth(a: net.Socket, b: net.Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
}

async function listening(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

export async function startConnectProxy(): Promise<TunnelProxy> {
  const targets: string[] = [];
  const server = http.createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const target = req.url ?? '';
    targets.push(target);
    const i = target.lastIndexOf(':');
    const upstream = net.connect(Number(target.slice(i + 1)), target.slice(0, i), () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      pipeBoth(client, upstream);
    });
    upstream.on('error', () => client.destroy());
  });
  const port = await listening(server);
  return { url: `http://127.0.0.1:${port}`, targets, close: () => void server.close() };
}

export async function startSocks5Proxy(): Promise<TunnelProxy> {
  const targets: string[] = [];
  const server = net.createServer((client) => {
    client.on('error', () => client.destroy());
    // greeting: VER NMETHODS METHODS...; answer: no authentication
    client.once('data', () => {
      client.write(Buffer.from([5, 0]));
      // request: VER CMD RSV ATYP ADDR PORT (CONNECT; IPv4 or a domain name)
      client.once('data', (req: Buffer) => {
        let host: string;
        let at: number;
        if (req[3] === 1) {
          host = [...req.subarray(4, 8)].join('.');
          at = 8;
        } else if (req[3] === 3) {
          host = req.subarray(5, 5 + req[4]!).toString();
          at = 5 + req[4]!;
        } else {
          client.end(Buffer.from([5, 8, 0, 1, 0, 0, 0, 0, 0, 0]));
          return;
        }
        const port = req.readUInt16BE(at);
        targets.push(`${host}:${port}`);
        const upstream = net.connect(port, host, () => {
          client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
          pipeBoth(client, upstream);
        });
        upstream.on('error', () => client.destroy());
      });
    });
  });
  const port = await listening(server);
  return { url: `socks5://127.0.0.1:${port}`, targets, close: () => void server.close() };
}
