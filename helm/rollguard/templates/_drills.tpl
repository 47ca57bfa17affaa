{{/* The scheduled drills' pods: a name of their own, so that neither rollguard's Service nor its
PodDisruptionBudget selects them; the NetworkPolicy lets them reach the API port. */}}
{{- define "rollguard.drill.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-drill" (include "rollguard.name" .) }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The key of the admin Secret holding the one token the scheduled drills send: the CLI takes one
token, and the admin key holds two during a rotation. The chart's own Secret: drill-token, the first
of auth.admin.tokens (the old one while a new one is added beside it). auth.admin.existingSecret:
drills.existingSecretKey, else auth.admin.existingSecretKey (which must then hold one token). */}}
{{- define "rollguard.drill.tokenKey" -}}
{{- if .Values.auth.admin.existingSecret -}}
{{- default .Values.auth.admin.existingSecretKey (dig "existingSecretKey" "" (default dict .Values.drills)) -}}
{{- else -}}
drill-token
{{- end -}}
{{- end -}}

{{/* Refuses drills the service would refuse: outside drills.namespaces, without the admin token,
in dry-run, where rollguard may not act. */}}
{{- define "rollguard.drill.validate" -}}
{{- $d := default dict .Values.drills -}}
{{- $ns := default (list) $d.namespaces -}}
{{- range $n := $ns -}}
{{- if include "rollguard.deniedNamespace" (dict "ns" $n "Values" $.Values) -}}
{{- fail (printf "drills.namespaces lists %s, a namespace rollguard never touches (scope.denyNamespaces, kube-system, kube-public, kube-node-lease)" $n) -}}
{{- end -}}
{{- if and $.Values.scope.namespaces (not (has $n $.Values.scope.namespaces)) -}}
{{- fail (printf "drills.namespaces lists %s, outside scope.namespaces: rollguard could neither roll back nor restore a drill there" $n) -}}
{{- end -}}
{{- end -}}
{{- range $s := default (list) $d.schedules -}}
{{- $target := splitList "/" $s.target -}}
{{- if not (has (index $target 1) $ns) -}}
{{- fail (printf "drills.schedules %s: %s is not in drills.namespaces (DRILL_NAMESPACES): rollguard would refuse the drill" $s.name $s.target) -}}
{{- end -}}
{{- end -}}
{{- if $d.schedules -}}
{{- if not (include "rollguard.adminAuth" .) -}}
{{- fail "drills.schedules: a scheduled drill starts with the admin token: set auth.admin.existingSecret (or auth.admin.tokens)" -}}
{{- end -}}
{{- if .Values.dryRun -}}
{{- fail "drills.schedules: dryRun is true and rollguard refuses drills in dry-run (it would not roll the fault back): set dryRun: false" -}}
{{- end -}}
{{- end -}}
{{- end -}}
