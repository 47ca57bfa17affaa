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
import type * as http from 'node:http';
import * as https from 'node:https';
import { isDeepStrictEqual } from 'node:util';

/**
 * How long an idle connection stays in the pool. Under the API server's own idle timeout (90 s,
 * k8s.io/apiserver secure_serving.go) and the usual load balancers' (60 s and up), so a pooled
 * connection is closed by us first and not found closed when reused.
 */
export const IDLE_SOCKET_MS = 30_000;

/** Options every agent has that say nothing of the connection's identity */
const NOT_IDENTITY: ReadonlySet<string> = new Set(['noDelay', 'path']);

/** The options of the agent client-node built that make the connection's identity: all but NOT_IDENTITY */
function identityOf(o: https.AgentOptions): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !NOT_IDENTITY.has(k)));
}

/**
 * Whether an identity can be compared by value: a function anywhere in it (a checkServerIdentity,
 * say) cannot, as client-node makes a new one for each call; that call is then not pooled.
 */
function comparable(v: unknown): boolean {
  if (typeof v === 'function') return false;
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return true;
  return Object.values(v).every(comparable);
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
  private current: { identity: Record<string, unknown>; agent: https.Agent } | undefined;

  /** The pooled agent for the TLS identity of `built` (the agent client-node made for this call), or `built` itself when it is not a plain https.Agent. */
  for(built: http.Agent | https.Agent): http.Agent | https.Agent {
    if (!(built instanceof https.Agent) || built.constructor !== https.Agent) return built;
    const identity = identityOf(built.options);
    if (!comparable(identity)) return built;
    // CA, certificates and keys are read afresh for each call: compared by content (Buffers byte by byte)
    if (!this.current || !isDeepStrictEqual(this.current.identity, identity)) {
      if (this.current) retire(this.current.agent);
      this.current = { identity, agent: new https.Agent({ ...built.options, keepAlive: true, timeout: IDLE_SOCKET_MS }) };
    }
    return this.current.agent;
  }

  /** Closes the idle connections: the next call connects anew. */
  dropIdle(): void {
    if (this.current) dropFree(this.current.agent);
  }
}
