import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { RuleSet } from '../rules/ruleset.js';
import type { Store } from '../store/store.js';
import type { AuthHook } from './auth.js';
import type { OpenApiRegistry, Security } from './openapi.js';

/** A check run by /readyz: resolves when fine, throws with the reason otherwise. */
export type ReadinessCheck = () => Promise<void> | void;

/** What every route module is given by buildApp (src/app.ts). */
export interface AppContext {
  config: Config;
  store: Store;
  metrics: Metrics;
  openapi: OpenApiRegistry;
  readiness: Record<string, ReadinessCheck>;
  now: () => number;
  /** the onRequest hook checking each kind of credential (route() applies the route's) */
  auth: Record<Security, AuthHook>;
  /** the rules in force, for intake's pre-match (each alert's queue lane); absent: every alert in the last lane */
  rules?: { readonly rules: RuleSet };
}

/** A group of routes mounted by buildApp, given the shared context. */
export type RouteModule = (app: FastifyInstance, ctx: AppContext) => void;
