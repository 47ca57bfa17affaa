// One keep-alive TLS agent per API client, in place of the fresh https.Agent that
// @kubernetes/client-node 1.x builds for every call (KubeConfig.applySecurityAuthentication ->
// createAgent). A fresh agent has no pool: every call opened its own TCP connection and did a full
// TLS handshake with the API server, on both sides' CPU. Upstream caches the agent from 2.0 on
// (kubernetes-client/javascript#2893), and 2.0 needs Node 22; rollguard supports Node 20, so the
// client keeps 1.4 and its request middleware hands reads this agent instead (src/kube/client.ts;
// writes keep a connection of their own).
//
// The TLS identity is every option of the agent client-node built for the call (its CA, client
// certificate and key, servername, verification), so a credential that changes (a kubeconfig
// exec plugin's new client certificate) gets a new agent, and the old one stops pooling. Proxy
// agents and plain-HTTP agents are left as client-node built them.
import { createHash } from 'node:crypto';
import type * as http from 'node:http';
import * as https from 'node:https';

/**
 * How long an idle connection stays in the pool. Under the API server's own idle timeout (90 s,
 * k8s.io/apiserver secure_serving.go) and the usual load balancers' (60 s and up), so a pooled
 * connection is closed by us first and not found closed when reused.
 */
export const IDLE_SOCKET_MS = 30_000;

/** Options every agent has that say nothing of the connection's identity */
const NOT_IDENTITY: ReadonlySet<string> = new Set(['noDelay', 'path']);

/**
 * A digest of every option of the agent client-node built (its CA, client certificate and key,
 * servername, verification, and whatever a later client-node adds), or undefined when one of them
 * is a function (a checkServerIdentity, say), which a digest cannot compare: that call is then not
 * pooled.
 */
function identityKey(o: Record<string, unknown>): string | undefined {
  const h = createHash('sha256');
  for (const k of Object.keys(o).sort()) {
    if (NOT_IDENTITY.has(k)) continue;
    const v = o[k];
    if (typeof v === 'function') return undefined;
    h.update(`${k.length}:${k}`);
    for (const part of Array.isArray(v) ? v : [v]) {
      if (Buffer.isBuffer(part)) {
        h.update(`b${part.length}:`);
        h.update(part);
      } else {
        const text = part === undefined ? 'u' : `j${JSON.stringify(part)}`;
        if (part !== undefined && typeof part === 'object' && part !== null && Object.values(part).some((x) => typeof x === 'function')) return undefined;
        h.update(`${text.length}:${text}`);
      }
    }
    h.update(';');
  }
  return h.digest('hex');
}

/** Stops an agent from pooling: its idle connections close now, its busy ones when their answer ends. */
function retire(agent: https.Agent): void {
  (agent as unknown as { keepAlive: boolean }).keepAlive = false;
  dropFree(agent);
}

function dropFree(agent: https.Agent): void {
  for (const sockets of Object.values(agent.freeSockets)) for (const s of sockets ?? []) s.destroy();
}

export class SharedAgent {
  private current: { key: string; agent: https.Agent } | undefined;

  /** The pooled agent for the TLS identity of `built` (the agent client-node made for this call), or `built` itself when it is not a plain https.Agent. */
  for(built: http.Agent | https.Agent): http.Agent | https.Agent {
    if (!(built instanceof https.Agent) || built.constructor !== https.Agent) return built;
    const key = identityKey(built.options as Record<string, unknown>);
    if (key === undefined) return built;
    if (this.current?.key !== key) {
      if (this.current) retire(this.current.agent);
      this.current = { key, agent: new https.Agent({ ...built.options, keepAlive: true, timeout: IDLE_SOCKET_MS }) };
    }
    return this.current.agent;
  }

  /** Closes the idle connections: the next call connects anew. */
  dropIdle(): void {
    if (this.current) dropFree(this.current.agent);
  }
}
