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
{{- range $k := list "webhook" "admin" -}}
{{- $a := index $.Values.auth $k -}}
{{- if and $a.existingSecret $a.tokens -}}
{{- fail (printf "auth.%s: set existingSecret or tokens, not both" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
RBAC rules: exactly what the enabled action kinds call (src/actions/*.ts through src/kube/).
Each entry: apiGroup, resource, verbs. Kinds sharing a resource get the union of verbs.
  Deployment   get+patch deployments (read, patch the pod template back); list replicasets (revisions)
  StatefulSet  get+patch statefulsets; list controllerrevisions
  DaemonSet    get+patch daemonsets; list controllerrevisions
  Rollout      get+patch rollouts, patch rollouts/status (abort); list replicasets (undo: revisions)
  BlueGreen    get+patch services (selector switch); list deployments (the pods behind each colour)
  Canary       get+patch deployments (spec.replicas of canary and stable; no scale subresource)
  HelmRelease  release Secrets + actions.helm.rules (added separately, below)
*/}}
{{- define "rollguard.rbacTable" -}}
Deployment:
  - [apps, deployments, [get, patch]]
  - [apps, replicasets, [list]]
StatefulSet:
  - [apps, statefulsets, [get, patch]]
  - [apps, controllerrevisions, [list]]
DaemonSet:
  - [apps, daemonsets, [get, patch]]
  - [apps, controllerrevisions, [list]]
Rollout:
  - [argoproj.io, rollouts, [get, patch]]
  - [argoproj.io, rollouts/status, [patch]]
  - [apps, replicasets, [list]]
BlueGreen:
  - ["", services, [get, patch]]
  - [apps, deployments, [list]]
Canary:
  - [apps, deployments, [get, patch]]
HelmRelease: []
{{- end -}}

{{- define "rollguard.rbacRules" -}}
{{- $table := include "rollguard.rbacTable" . | fromYaml -}}
{{- $order := list "get" "list" "watch" "create" "update" "patch" "delete" -}}
{{- $acc := dict -}}
{{- range $kind := .Values.actions.enabled -}}
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
