import type { KubeObject } from '../kube/kube.js';
import type { JobState } from './outcome.js';

/** The migration rollback Job a plan runs before the workload write (RollbackPlan.migration). */
export interface PlannedMigration {
  namespace: string;
  name: string;
  /** the Job to create; absent when a replica takes up a record whose Job exists (never created twice) */
  job?: KubeObject;
  /** "ConfigMap shop/checkout-migrations key rollback-job.yaml" */
  source: string;
  deadlineMs: number;
  logLines: number;
}

/** What the record keeps of the Job: its name and outcome, and why it failed (never its spec or env). */
export interface MigrationRecord {
  namespace: string;
  job: string;
  source: string;
  deadlineMs: number;
  /** planned: not created yet; running: created (or found) and waited for */
  state: 'planned' | JobState;
  createdAt?: number;
  finishedAt?: number;
  message?: string;
  /** the failed container (or the pod still running at the deadline) */
  failed?: { pod: string; container: string; exitCode?: number; reason?: string };
  /** its last log lines, or its termination message's last lines when no log could be read */
  lines?: string[];
  linesFrom?: 'log' | 'termination message' | 'pod status';
}
