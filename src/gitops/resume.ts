// POST /v1/rollbacks/:id/resume-gitops (admin): puts back exactly what the rollback suspended on
// its GitOps owners, never by itself; a field someone changed since is left as they left it, and
// the record says so (resumeOwners). After the bad commit is reverted in git, the owners reconcile
// to the good revision again.
import type { EngineContext } from '../engine/context.js';
import type { RollbackRecord } from '../engine/record.js';
import { resumeOwners } from './suspend.js';

export type ResumeResult = { kind: 'ok'; record: RollbackRecord } | { kind: 'not_found' } | { kind: 'conflict'; message: string };

export async function resumeGitOps(ctx: EngineContext, id: string, by: string): Promise<ResumeResult> {
  const rec = await ctx.records.get(id);
  if (!rec) return { kind: 'not_found' };
  const g = rec.gitops;
  if (!g?.suspended?.length) return { kind: 'conflict', message: `rollback ${id} suspended no GitOps owner` };
  if (g.resumed) return { kind: 'conflict', message: `rollback ${id}'s GitOps owners were resumed by ${g.resumed.by} at ${new Date(g.resumed.at).toISOString()}` };
  if (rec.state === 'in_progress') return { kind: 'conflict', message: `rollback ${id} is still in progress: resume once it has ended` };
  const kube = ctx.actionContext(rec, () => []).kube;
  if (!kube) return { kind: 'conflict', message: 'no Kubernetes cluster configured: set KUBECONFIG (--kubeconfig)' };
  const restored = await resumeOwners(kube, g.suspended);
  g.resumed = { at: ctx.now(), by, restored };
  ctx.records.step(rec, 'gitops_resumed', `resumed by ${by}: ${restored.join('; ')}`);
  await ctx.records.save(rec);
  ctx.log.info({ record: rec.id, by, restored }, 'GitOps owners resumed');
  return { kind: 'ok', record: rec };
}
