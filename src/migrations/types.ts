import type { KubeObject } from '../kube/kube.js';
import type { JobState } from './outcome.js';

/** The migration rollback Job a plan runs before the workload write (RollbackPlan.migration). */
export interface PlannedMigration {
  namespace: string;
  name: string;
  /** the Job to create; absent when a replica takes up a record whose Job exists (never created twice) */
  job?: KubeObject;
  /** the uid of the Job rollguard created, when a replica takes it up: only a Job with this uid is waited for */
  uid?: string;
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
  /**
   * planned: not created yet; running: created and waited for; not_ours: a Job under its name is
   * not one rollguard can show it created (someone else's, one put in its place, or one whose uid
   * was never recorded): never waited for, the workload not rolled back
   */
  state: 'planned' | JobState | 'not_ours';
  /**
   * the uid the API server gave the Job rollguard created, recorded right after the create: the
   * only Job that counts as this rollback's (records written before 2026-12-07 have none)
   */
  uid?: string;
  /** the Job found under its name that is not rollguard's (state not_ours) */
  foreign?: { uid?: string; createdAt?: string; managedBy?: string };
  createdAt?: number;
  finishedAt?: number;
  message?: string;
  /** the failed container (or the pod still running at the deadline) */
  failed?: { pod: string; container: string; exitCode?: number; reason?: string };
  /** its last log lines, or its termination message's last lines when no log could be read */
  lines?: string[];
  linesFrom?: 'log' | 'termination message' | 'pod status';
}
