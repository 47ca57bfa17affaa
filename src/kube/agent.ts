// One keep-alive TLS agent per API client, in place of the fresh https.Agent that
// @kubernetes/client-node 1.x builds for every call (KubeConfig.applySecurityAuthentication ->
// createAgent). A fresh agent has no pool: every GET, LIST and PATCH opened its own TCP connection
// and did a full TLS handshake with the API server, on both sides' CPU. Upstream caches the agent
// from 2.0 on (kubernetes-client/javascript#2893), and 2.0 needs Node 22; rollguard supports
// Node 20, so the client keeps 1.4 and the request middleware hands it this agent instead
// (src/kube/client.ts).
//
// The TLS identity is read from the agent client-node built for the call (its CA, client
// certificate and key, servername, verification), so a credential that changes (a kubeconfig
// exec plugin's new client certificate) gets a new agent; the old one's idle sockets close by
// themselves. Proxy agents and plain-HTTP agents are left as client-node built them.
import { createHash } from 'node:crypto';
import type * as http from 'node:http';
import * as https from 'node:https';

/**
 * How long an idle connection stays in the pool. Under the API server's own idle timeout (90 s,
 * k8s.io/apiserver secure_serving.go) and the usual load balancers' (60 s and up), so a pooled
 * connection is closed by us first and not found closed when reused.
 */
export const IDLE_SOCKET_MS = 30_000;

/** The options of an agent that make its TLS identity; the rest (noDelay, path) are the agent's own. */
const IDENTITY = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername', 'ciphers', 'secureProtocol', 'crl'] as const;

function identityKey(o: https.AgentOptions): string {
  const h = createHash('sha256');
  for (const k of IDENTITY) {
    const v = (o as Record<string, unknown>)[k];
    h.update(`${k}=`);
    h.update(v === undefined ? '-' : JSON.stringify(v, (_, x: unknown) => (Buffer.isBuffer(x) ? x.toString('base64') : x)) ?? '-');
    h.update('\n');
  }
  return h.digest('hex');
}

export class SharedAgent {
  private current: { key: string; agent: https.Agent } | undefined;

  /** The pooled agent for the TLS identity of `built` (the agent client-node made for this call), or `built` itself when it is not a plain https.Agent. */
  for(built: http.Agent | https.Agent): http.Agent | https.Agent {
    if (!(built instanceof https.Agent) || built.constructor !== https.Agent) return built;
    const key = identityKey(built.options);
    if (this.current?.key !== key) {
      this.current = { key, agent: new https.Agent({ ...built.options, keepAlive: true, timeout: IDLE_SOCKET_MS }) };
    }
    return this.current.agent;
  }

  /** Closes the pooled connections (the client is done). */
  destroy(): void {
    this.current?.agent.destroy();
    this.current = undefined;
  }
}
