{{/* Names and labels */}}
{{- define "rollguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rollguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rollguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rollguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rollguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rollguard
{{- end -}}

{{- define "rollguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rollguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rollguard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Secret names: an existing Secret, or the one the chart creates */}}
{{- define "rollguard.secretName" -}}
{{- printf "%s-secrets" (include "rollguard.fullname" .) -}}
{{- end -}}

{{/* An external Redis: redis.url or redis.existingSecret. */}}
{{- define "rollguard.redisExternal" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The bundled Redis StatefulSet: redis.bundled.enabled and no external Redis. A release made
with chart 0.1 and upgraded with --reuse-values keeps its old values, without redis.bundled (helm
then ignores the new defaults): no bundled Redis, as before. */}}
{{- define "rollguard.redisBundled" -}}
{{- if and (dig "bundled" "enabled" false .Values.redis) (not (include "rollguard.redisExternal" .)) -}}
{{- if not (dig "bundled" "image" "tag" "" .Values.redis) -}}
{{- fail "redis.bundled.enabled is set but the rest of redis.bundled (image, auth, persistence...) is missing: helm upgrade --reuse-values keeps a release's old values and ignores the chart's new defaults; upgrade with --reset-then-reuse-values instead" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- define "rollguard.redisConfigured" -}}
{{- if or (include "rollguard.redisExternal" .) (include "rollguard.redisBundled" .) -}}true{{- end -}}
{{- end -}}

{{/* The bundled Redis: names, labels (its own app.kubernetes.io/name, so that rollguard's
Service, PodDisruptionBudget and topology spread never select its pod) */}}
{{- define "rollguard.redis.fullname" -}}
{{- printf "%s-redis" (include "rollguard.fullname" . | trunc 45 | trimSuffix "-") -}}
{{- end -}}

{{- define "rollguard.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-redis" (include "rollguard.name" . | trunc 57 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: store
{{- end -}}

{{- define "rollguard.redis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rollguard.redis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.redis.bundled.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rollguard
{{- end -}}

{{- define "rollguard.redis.image" -}}
{{- $i := .Values.redis.bundled.image -}}
{{- if $i.digest -}}
{{- printf "%s:%s@%s" $i.repository $i.tag $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository $i.tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the bundled Redis password, and its key */}}
{{- define "rollguard.redis.secretName" -}}
{{- default (include "rollguard.redis.fullname" .) .Values.redis.bundled.auth.existingSecret -}}
{{- end -}}

{{- define "rollguard.redis.secretKey" -}}
{{- if .Values.redis.bundled.auth.existingSecret -}}{{ .Values.redis.bundled.auth.existingSecretKey }}{{- else -}}redis-password{{- end -}}
{{- end -}}

{{- define "rollguard.helmEnabled" -}}
{{- if has "HelmRelease" .Values.actions.enabled -}}true{{- end -}}
{{- end -}}

{{/* Settings that cannot go together: fail at render time with what to fix. */}}
{{- define "rollguard.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "rollguard.redisConfigured" .)) -}}
{{- fail (printf "replicaCount is %d: more than one replica needs a shared store; set redis.url or redis.existingSecret, or keep redis.bundled.enabled (or replicaCount: 1 for the in-memory store)" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.redis.url .Values.redis.existingSecret -}}
{{- fail "set redis.url or redis.existingSecret, not both" -}}
{{- end -}}
{{- if and (dig "bundled" "auth" "existingSecret" "" .Values.redis) (not (dig "bundled" "auth" "enabled" false .Values.redis)) -}}
{{- fail "redis.bundled.auth.existingSecret is set but redis.bundled.auth.enabled is false" -}}
{{- end -}}
{{- if and .Values.rules.existingConfigMap (or .Values.rules.inline (not .Values.rules.create)) -}}
{{- if .Values.rules.inline -}}
{{- fail "rules.inline adds files to the chart's rules ConfigMap; it cannot be used with rules.existingConfigMap" -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.rules.create) (not .Values.rules.existingConfigMap) -}}
{{- fail "rules.create is false: name the ConfigMap holding the rule files in rules.existingConfigMap" -}}
{{- end -}}
{{- range $k := list "webhook" "read" "admin" -}}
{{- $a := default dict (index $.Values.auth $k) -}}
{{- if and $a.existingSecret $a.tokens -}}
{{- fail (printf "auth.%s: set existingSecret or tokens, not both" $k) -}}
{{- end -}}
{{- if and $a.allowUnauthenticated (or $a.existingSecret $a.tokens) -}}
{{- fail (printf "auth.%s.allowUnauthenticated is true but a credential is set (existingSecret or tokens): keep one of the two" $k) -}}
{{- end -}}
{{- end -}}
{{- if not (or (include "rollguard.webhookAuth" .) .Values.auth.webhook.allowUnauthenticated) -}}
{{- fail "auth.webhook: no webhook credential. Without one, any pod that reaches rollguard can post a forged alert and roll a workload back. Set auth.webhook.existingSecret (a Secret holding the token Alertmanager sends; see docs/operations.md) or auth.webhook.tokens; or set auth.webhook.allowUnauthenticated: true to run an open webhook on purpose" -}}
{{- end -}}
{{- if and .Values.prometheus.url .Values.prometheus.existingSecret -}}
{{- fail "set prometheus.url or prometheus.existingSecret, not both" -}}
{{- end -}}
{{- if and (not .Values.dryRun) (not (or .Values.prometheus.url .Values.prometheus.existingSecret)) (not .Values.prometheus.allowUnconfirmed) -}}
{{- fail "dryRun is false but no Prometheus is configured: every alert would be acted on unconfirmed (rules' onPrometheusDown), and an alert can be forged through Alertmanager's API. Set prometheus.url or prometheus.existingSecret; or keep dryRun: true; or set prometheus.allowUnconfirmed: true on purpose" -}}
{{- end -}}
{{- if and (include "rollguard.helmEnabled" .) (not .Values.scope.namespaces) -}}
{{- fail "actions.enabled lists HelmRelease, which needs write access to Secrets and to every kind a release holds: the chart grants that only per namespace. List the namespaces of the releases in scope.namespaces (Roles there, nothing cluster-wide)" -}}
{{- end -}}
{{- if and (dig "enabled" false (default dict .Values.migrations)) (not .Values.scope.namespaces) -}}
{{- fail "migrations.enabled grants creating Jobs, and a Job can run any pod as any ServiceAccount of its namespace: the chart grants that only per namespace. List the namespaces whose rules name a migration rollback Job in scope.namespaces (Roles there, nothing cluster-wide)" -}}
{{- end -}}
{{- if and (has "ConfigMap" .Values.actions.enabled) (not (include "rollguard.snapshotsEnabled" .)) -}}
{{- fail "actions.enabled lists ConfigMap, which restores a ConfigMap from its snapshots: set configSnapshots.enabled: true too (without snapshots it could only refuse, while holding list and patch on ConfigMaps)" -}}
{{- end -}}
{{- range $ns := .Values.scope.namespaces -}}
{{- if include "rollguard.deniedNamespace" (dict "ns" $ns "Values" $.Values) -}}
{{- fail (printf "scope.namespaces lists %s: rollguard is never granted rights in kube-system, kube-public, kube-node-lease or a namespace of scope.denyNamespaces; remove it" $ns) -}}
{{- end -}}
{{- end -}}
{{- if .Values.gitops.enabled -}}
{{- range $ns := prepend (default (list) .Values.gitops.flux.namespaces) .Values.gitops.argocd.namespace -}}
{{- if include "rollguard.deniedNamespace" (dict "ns" $ns "Values" $.Values) -}}
{{- fail (printf "gitops: %s is a namespace of gitops.argocd.namespace or gitops.flux.namespaces, and rollguard is never granted rights in kube-system, kube-public, kube-node-lease or a namespace of scope.denyNamespaces; remove it" $ns) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- range $k := list "alertmanager" "prometheus" -}}
{{- $p := index $.Values.networkPolicy $k -}}
{{- if and (empty $p.namespaceSelector) (empty $p.podSelector) -}}
{{- fail (printf "networkPolicy.%s: namespaceSelector and podSelector are both empty, which lets every pod of the cluster in; select the %s pods (or set networkPolicy.enabled: false)" $k $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if include "rollguard.redisBundled" . -}}
{{- $_ := include "rollguard.redis.maxmemory" . -}}
{{- end -}}
{{- /* Two env entries of one name: Kubernetes gives the container the last, extraEnv's, and the
chart's (the release's own objects, kube-system...) would be lost without a word. */ -}}
{{- $chartSet := dict "SCOPE_DENY_TARGETS" "scope.denyTargets (a list of Kind/namespace/name globs), which adds to the release's own objects the chart always denies; as extraEnv it would replace them, and rollguard could roll itself back" "SCOPE_DENY_NAMESPACES" "scope.denyNamespaces (a list), which adds to kube-system, kube-public and kube-node-lease, always denied; as extraEnv it would replace them" -}}
{{- range $e := default (list) .Values.extraEnv -}}
{{- with get $chartSet (toString $e.name) -}}
{{- fail (printf "extraEnv sets %s, which the chart sets itself (Kubernetes keeps the last of two entries of one name): move its value to %s" $e.name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Credentials configured (existingSecret or tokens) for auth.webhook / auth.read / auth.admin */}}
{{- define "rollguard.webhookAuth" -}}
{{- if or .Values.auth.webhook.existingSecret .Values.auth.webhook.tokens -}}true{{- end -}}
{{- end -}}
{{- define "rollguard.adminAuth" -}}
{{- if or .Values.auth.admin.existingSecret .Values.auth.admin.tokens -}}true{{- end -}}
{{- end -}}
{{/* The read token: an existing Secret, tokens, or one the chart generates (also for values from
before auth.read existed, kept by helm upgrade --reuse-values); none when allowUnauthenticated. */}}
{{- define "rollguard.readAuth" -}}
{{- if not (dig "read" "allowUnauthenticated" false .Values.auth) -}}true{{- end -}}
{{- end -}}
{{- define "rollguard.readSecretName" -}}
{{- $r := default dict .Values.auth.read -}}
{{- if $r.existingSecret -}}{{ $r.existingSecret }}
{{- else if $r.tokens -}}{{ include "rollguard.secretName" . }}
{{- else -}}{{ printf "%s-read" (include "rollguard.fullname" .) }}
{{- end -}}
{{- end -}}
{{- define "rollguard.readSecretKey" -}}
{{- $r := default dict .Values.auth.read -}}
{{- if $r.existingSecret -}}{{ default "token" $r.existingSecretKey }}
{{- else if $r.tokens -}}read-token
{{- else -}}token
{{- end -}}
{{- end -}}

{{/* A Kubernetes memory quantity as bytes: an integer, optionally with Ki Mi Gi Ti (powers of
1024) or k M G T (powers of 1000); fails naming the value otherwise. Call with (list VALUE NAME). */}}
{{- define "rollguard.bytes" -}}
{{- $q := toString (index . 0) -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- if not (regexMatch "^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$" $q) -}}
{{- fail (printf "%s is %q: give an integer with Ki, Mi, Gi, Ti, k, M, G or T (e.g. 256Mi)" (index . 1) $q) -}}
{{- end -}}
{{- mul (regexFind "^[0-9]+" $q | int64) (index $units (regexReplaceAll "^[0-9]+" $q "")) -}}
{{- end -}}

{{/* The bundled Redis' maxmemory in bytes: redis.bundled.maxmemory, or half of its container's
memory limit; always below that limit. */}}
{{- define "rollguard.redis.maxmemory" -}}
{{- $r := .Values.redis.bundled -}}
{{- $limit := dig "limits" "memory" "" (default dict $r.resources) -}}
{{- if not $limit -}}
{{- fail "redis.bundled.resources.limits.memory is not set: give the bundled Redis a memory limit (its maxmemory stays below it, so that a full Redis refuses writes instead of being OOM-killed)" -}}
{{- end -}}
{{- $limitBytes := include "rollguard.bytes" (list $limit "redis.bundled.resources.limits.memory") | int64 -}}
{{- $max := div $limitBytes 2 -}}
{{- with $r.maxmemory -}}
{{- $max = include "rollguard.bytes" (list . "redis.bundled.maxmemory") | int64 -}}
{{- end -}}
{{- if or (ge $max $limitBytes) (le $max 0) -}}
{{- fail (printf "redis.bundled.maxmemory (%s) must be above 0 and below redis.bundled.resources.limits.memory (%s), with room for the AOF rewrite and client buffers" $r.maxmemory $limit) -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/*
RBAC rules: exactly what the enabled action kinds call (src/actions/*.ts through src/kube/).
Each entry: apiGroup, resource, verbs. Kinds sharing a resource get the union of verbs.
  Deployment   get+patch deployments (read, patch the pod template back); list replicasets (revisions)
  StatefulSet  get+patch statefulsets; list controllerrevisions
  DaemonSet    get+patch daemonsets; list controllerrevisions
  (these three) get configmaps, and get secrets when rollguard.checkSecrets (below) is on: the
               restored revision's configuration, read as metadata only (src/config-deps/check.ts)
  Rollout      get+patch rollouts, patch rollouts/status (abort); list replicasets (undo: revisions)
  BlueGreen    get+patch services (selector switch); list deployments (the pods behind each colour);
               list replicasets (when each colour was last deployed: its Deployments' current ReplicaSet)
  Canary       get+patch deployments (spec.replicas of canary and stable; no scale subresource); list
               replicasets (the canary's current ReplicaSet, for the record)
  VirtualService get+patch networking.istio.io virtualservices (route weights back to the stable subset)
  HelmRelease  release Secrets + actions.helm.rules (added separately, below)
*/}}
{{- define "rollguard.rbacTable" -}}
{{- $checkSecrets := include "rollguard.checkSecrets" . -}}
Deployment:
  - [apps, deployments, [get, patch]]
  - [apps, replicasets, [list]]
  - ["", configmaps, [get]]
{{- if $checkSecrets }}
  - ["", secrets, [get]]
{{- end }}
StatefulSet:
  - [apps, statefulsets, [get, patch]]
  - [apps, controllerrevisions, [list]]
  - ["", configmaps, [get]]
{{- if $checkSecrets }}
  - ["", secrets, [get]]
{{- end }}
DaemonSet:
  - [apps, daemonsets, [get, patch]]
  - [apps, controllerrevisions, [list]]
  - ["", configmaps, [get]]
{{- if $checkSecrets }}
  - ["", secrets, [get]]
{{- end }}
Rollout:
  - [argoproj.io, rollouts, [get, patch]]
  - [argoproj.io, rollouts/status, [patch]]
  - [apps, replicasets, [list]]
BlueGreen:
  - ["", services, [get, patch]]
  - [apps, deployments, [list]]
  - [apps, replicasets, [list]]
Canary:
  - [apps, deployments, [get, patch]]
  - [apps, replicasets, [list]]
VirtualService:
  - [networking.istio.io, virtualservices, [get, patch]]
{{- /* a configuration-only rollback: read the ConfigMap and its snapshots, write the snapshot's
content back, and restart (patch) the workloads whose template uses it */}}
ConfigMap:
  - ["", configmaps, [get, list, patch]]
  - [apps, deployments, [get, list, patch]]
  - [apps, statefulsets, [get, list, patch]]
  - [apps, daemonsets, [get, list, patch]]
HelmRelease: []
{{- /* not a kind: configSnapshots.enabled (CONFIG_SNAPSHOTS, src/config-deps/watch.ts) watches the
workloads for the ConfigMaps they use, keeps each content as an immutable snapshot ConfigMap
(create; delete beyond configSnapshots.max) and restores one (patch); configSnapshots.secrets the
same for Secrets */}}
configSnapshots:
  - ["", configmaps, [get, list, watch, create, patch, delete]]
  - [apps, deployments, [list, watch]]
  - [apps, statefulsets, [list, watch]]
  - [apps, daemonsets, [list, watch]]
{{- if dig "secrets" false (default dict .Values.configSnapshots) }}
  - ["", secrets, [get, list, watch, create, patch, delete]]
{{- end }}
{{- /* not a kind: migrations.enabled lets a rule's migration rollback Job run (src/migrations/):
read its template ConfigMap, create the Job (a server dry run first), follow it, and on a failure
read its pods' last log lines */}}
migrations:
  - ["", configmaps, [get]]
  - [batch, jobs, [get, create]]
  - ["", pods, [list]]
  - ["", pods/log, [get]]
{{- end -}}

{{/*
actions.checkSecrets as it takes effect: "true" or empty. true or false as set; null (the default)
means auto: on with scope.namespaces (per-namespace Roles: Secrets read where rollguard may act
only) or with configSnapshots.enabled and configSnapshots.secrets (which grant reading and writing
Secrets wherever rollguard may act anyway, and whose restore needs the check), off cluster-wide:
`get secrets` in a ClusterRole would let the token read every Secret of the cluster, kube-system's
included. It decides both the `get secrets` rule of the workload kinds (rollguard.rbacTable) and
CONFIG_CHECK_SECRETS (deployment.yaml), so that rollguard never asks for what it is not granted.
*/}}
{{- /* true cluster-wide was the default before auto: a release upgraded with --reuse-values keeps it
(helm ignores the new default), and with it `get secrets` on every Secret of the cluster. It is
refused unless actions.checkSecretsClusterWide says it is on purpose. */}}
{{- define "rollguard.checkSecrets" -}}
{{- $v := .Values.actions.checkSecrets -}}
{{- if kindIs "bool" $v -}}
{{- $snapshotSecrets := and (include "rollguard.snapshotsEnabled" .) (dig "secrets" false (default dict .Values.configSnapshots)) -}}
{{- if and $v (not .Values.scope.namespaces) (not (dig "checkSecretsClusterWide" false .Values.actions)) (not $snapshotSecrets) -}}
{{- fail "actions.checkSecrets: true with scope.namespaces empty lets rollguard's token read every Secret in the cluster, kube-system's included. It was the default before this chart made it auto, and helm upgrade --reuse-values keeps it: set actions.checkSecrets=false (or upgrade with --reset-then-reuse-values: the default is now auto, off cluster-wide), list scope.namespaces, or set actions.checkSecretsClusterWide=true to keep it on purpose" -}}
{{- end -}}
{{- if and (not $v) $snapshotSecrets -}}
{{- fail "configSnapshots.secrets restores Secrets, which needs their check: actions.checkSecrets: false turns it off (CONFIG_CHECK_SECRETS=false, so no Secret would ever be restored); leave actions.checkSecrets unset (auto) or set configSnapshots.secrets=false" -}}
{{- end -}}
{{- if $v }}true{{ end -}}
{{- else if or .Values.scope.namespaces (and (include "rollguard.snapshotsEnabled" .) (dig "secrets" false (default dict .Values.configSnapshots))) -}}
true
{{- end -}}
{{- end -}}

{{- define "rollguard.snapshotsEnabled" -}}
{{- if dig "enabled" false (default dict .Values.configSnapshots) }}true{{ end -}}
{{- end -}}

{{- define "rollguard.rbacRules" -}}
{{- $table := include "rollguard.rbacTable" . | fromYaml -}}
{{- $order := list "get" "list" "watch" "create" "update" "patch" "delete" -}}
{{- $acc := dict -}}
{{- $extra := concat (include "rollguard.snapshotsEnabled" . | empty | ternary (list) (list "configSnapshots")) (dig "enabled" false (default dict .Values.migrations) | ternary (list "migrations") (list)) -}}
{{- range $kind := concat .Values.actions.enabled $extra -}}
{{- range $entry := index $table $kind -}}
{{- $key := printf "%s|%s" (index $entry 0) (index $entry 1) -}}
{{- $_ := set $acc $key (concat (default (list) (get $acc $key)) (index $entry 2)) -}}
{{- end -}}
{{- end -}}
{{- range $key := keys $acc | sortAlpha }}
{{- $parts := splitList "|" $key }}
{{- $verbs := get $acc $key }}
- apiGroups: [{{ index $parts 0 | quote }}]
  resources: [{{ index $parts 1 | quote }}]
  verbs: [{{- $first := true -}}{{- range $v := $order -}}{{- if has $v $verbs -}}{{- if not $first }}, {{ end -}}{{ $v | quote }}{{- $first = false -}}{{- end -}}{{- end -}}]
{{- end }}
{{- if include "rollguard.helmEnabled" . }}
# HelmRelease: helm keeps each release revision in a Secret (owner=helm) that rollback reads,
# writes anew, marks superseded and prunes (--history-max); then it re-applies the release's objects.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "create", "update", "delete"]
{{- with .Values.actions.helm.rules }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* gitops (gitops.enabled): namespace -> the rules of the Role rollguard gets there: read who
reconciles a target, suspend it before a rollback and restore it on resume. Argo CD Applications
(ApplicationSets only read) in gitops.argocd.namespace; Flux Kustomizations and HelmReleases in
each of gitops.flux.namespaces. Never cluster-wide: patching them is close to cluster-admin. */}}
{{- define "rollguard.gitopsRoles" -}}
{{- $roles := dict -}}
{{- if .Values.gitops.enabled -}}
{{- $argo := list (list "argoproj.io" "applications" (list "get" "patch")) (list "argoproj.io" "applicationsets" (list "get")) -}}
{{- $flux := list (list "kustomize.toolkit.fluxcd.io" "kustomizations" (list "get" "patch")) (list "helm.toolkit.fluxcd.io" "helmreleases" (list "get" "patch")) -}}
{{- $_ := set $roles .Values.gitops.argocd.namespace $argo -}}
{{- range $ns := .Values.gitops.flux.namespaces -}}
{{- $_ := set $roles $ns (concat (default (list) (get $roles $ns)) $flux) -}}
{{- end -}}
{{- end -}}
{{- toYaml $roles -}}
{{- end -}}

{{/* The release's own objects, as SCOPE_DENY_TARGETS globs (any kind: `*`), always denied: rollguard's
Deployment and Service (<fullname>), the ConfigMap of its rule files, the bundled Redis' StatefulSet,
Services and Secret, and the Secrets and ConfigMaps the chart makes for it (tokens, the snapshots'
key, the dashboards). The shipped triggers name rollguard's own Deployment like any other (its
pods' memory, a rollout of it that stopped progressing), and with the ClusterRole, or a Role in
its own namespace, RBAC lets it patch itself: without these, rollguard would roll itself (or its
Redis) back, undoing a helm upgrade behind helm's back and replacing the replica verifying the
rollback, or restore its rule files, or a token Secret another workload of its namespace mounts
(CONFIG_SNAPSHOTS_SECRETS), from an older snapshot. Secrets named by an existingSecret value are
the operator's: scope.denyTargets can add them. */}}
{{- define "rollguard.selfTargets" -}}
{{- $ns := .Release.Namespace -}}
{{- $fullname := include "rollguard.fullname" . -}}
{{- $names := list $fullname (default (printf "%s-rules" $fullname) .Values.rules.existingConfigMap) (include "rollguard.secretName" .) -}}
{{- $r := default dict .Values.auth.read -}}
{{- if and (include "rollguard.readAuth" .) (not $r.existingSecret) (not $r.tokens) -}}
{{- $names = append $names (include "rollguard.readSecretName" .) -}}
{{- end -}}
{{- $s := default dict .Values.configSnapshots -}}
{{- if and $s.enabled (not $s.existingSecret) -}}
{{- $names = append $names (printf "%s-snapshots" $fullname) -}}
{{- end -}}
{{- if dig "enabled" false (default dict .Values.grafanaDashboard) -}}
{{- $names = append $names (printf "%s-dashboards" $fullname) -}}
{{- end -}}
{{- if include "rollguard.redisBundled" . -}}
{{- $redis := include "rollguard.redis.fullname" . -}}
{{- $names = concat $names (list $redis (printf "%s-headless" $redis)) -}}
{{- if not .Values.redis.bundled.auth.existingSecret -}}
{{- $names = append $names (include "rollguard.redis.secretName" .) -}}
{{- end -}}
{{- end -}}
{{- $self := list -}}
{{- range $n := $names | uniq -}}
{{- $self = append $self (printf "*/%s/%s" $ns $n) -}}
{{- end -}}
{{- join "," $self -}}
{{- end -}}

{{/* The entry that denies namespace .ns: kube-system, kube-public and kube-node-lease, always, and
scope.denyNamespaces, names or globs (`*`: any characters), as rollguard matches them
(SCOPE_DENY_NAMESPACES, src/guards/scope.ts deniedNamespace); empty when none does. */}}
{{- define "rollguard.deniedNamespace" -}}
{{- $ns := .ns -}}
{{- $found := "" -}}
{{- range $g := concat (list "kube-system" "kube-public" "kube-node-lease") (default (list) .Values.scope.denyNamespaces) -}}
{{- if and (not $found) (or (eq $g $ns) (and (contains "*" $g) (regexMatch (printf "^%s$" (regexQuoteMeta $g | replace "\\*" ".*")) $ns))) -}}
{{- $found = $g -}}
{{- end -}}
{{- end -}}
{{- $found -}}
{{- end -}}
