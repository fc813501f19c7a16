{{/*
Named templates. Those under "Inject" are the interface for other charts: each takes this
chart's context, which is `.` here and `.Subcharts.leakwatch` in a chart that depends on
this one (see helm/README.md). The chart's own Deployment is built from the same ones.
*/}}

{{- define "leakwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leakwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leakwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leakwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leakwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leakwatch.labels" -}}
helm.sh/chart: {{ include "leakwatch.chart" . }}
{{ include "leakwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "leakwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The address `leakwatch run --listen` gets: POD_IP comes from the downward API. */}}
{{- define "leakwatch.listen" -}}
{{- if eq .Values.sidecar.listen "podIP" }}
{{- printf "$(POD_IP):%d" (int .Values.sidecar.port) }}
{{- else }}
{{- printf "0.0.0.0:%d" (int .Values.sidecar.port) }}
{{- end }}
{{- end }}

{{/* The address of the probe listener (`--probe-listen`): sidecar.probePort. */}}
{{- define "leakwatch.probeListen" -}}
{{- if eq .Values.sidecar.listen "podIP" }}
{{- printf "$(POD_IP):%d" (int .Values.sidecar.probePort) }}
{{- else }}
{{- printf "0.0.0.0:%d" (int .Values.sidecar.probePort) }}
{{- end }}
{{- end }}

{{- define "leakwatch.configPath" -}}
/etc/leakwatch/leakwatch.toml
{{- end }}

{{/* ---- The config: .Values.config written as TOML ---- */}}

{{/*
A TOML value: strings as JSON strings (a valid TOML basic string), whole numbers as
integers (values arrive as floats: `fail_after = 3`, not `3.0`), arrays of scalars.
*/}}
{{- define "leakwatch.toml.value" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if kindIs "float64" . }}{{ if eq (floor .) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) }}{{ . }}
{{- else if kindIs "slice" . }}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "leakwatch.toml.value" $e }}{{ end }}]
{{- else }}{{ fail (printf "leakwatch config: cannot write %v (a %s) as a TOML value" . (kindOf .)) }}
{{- end }}
{{- end }}

{{- define "leakwatch.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* A list whose items are tables: written as [[array.of.tables]]. */}}
{{- define "leakwatch.toml.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) }}{{ if kindIs "map" (first .) }}true{{ end }}{{ end }}
{{- end }}

{{/* "true" when a table has keys of its own, not only sub-tables (which need no header). */}}
{{- define "leakwatch.toml.hasPlainKeys" -}}
{{- range $k, $v := . }}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "leakwatch.toml.isTableArray" $v)) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
One table: (dict "path" "a.b" "table" MAP). Plain keys first, then sub-tables and arrays
of tables, each sorted; a null value leaves its key out (so a default can be unset).
*/}}
{{- define "leakwatch.toml.table" -}}
{{- $path := .path }}
{{- $table := .table }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := get $table $k }}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "leakwatch.toml.isTableArray" $v)) }}
{{ include "leakwatch.toml.key" $k }} = {{ include "leakwatch.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := get $table $k }}
{{- $p := include "leakwatch.toml.key" $k }}
{{- if $path }}{{ $p = printf "%s.%s" $path $p }}{{ end }}
{{- if kindIs "map" $v }}
{{- if or (not $v) (include "leakwatch.toml.hasPlainKeys" $v) }}

[{{ $p }}]
{{- end }}
{{- include "leakwatch.toml.table" (dict "path" $p "table" $v) }}
{{- else if include "leakwatch.toml.isTableArray" $v }}
{{- range $item := $v }}

[[{{ $p }}]]
{{- include "leakwatch.toml.table" (dict "path" $p "table" $item) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "leakwatch.config" -}}
# leakwatch config rendered by the leakwatch Helm chart from its `config` value.
# `listen` comes from the command line (sidecar.port, sidecar.listen); `mode` from the
# chart's `mode` value.
{{- if .Values.fleet.enabled }}
# [fleet] comes from the chart's `fleet` value: max_concurrent is K, the number of slot
# Leases the chart created (a percentage is computed by the chart); the identity is $POD_NAME.
{{- end }}
{{- $cfg := deepCopy .Values.config }}
{{- /* mode: enforce or observe (the first step of adoption), the config's top-level key. */}}
{{- $_ := set $cfg "mode" (.Values.mode | default "enforce") }}
{{- with .Values.diagnostics }}
{{- if .enabled }}
{{- /* diagnostics.enabled adds [actions.bundle] unless config.actions.bundle is set. */}}
{{- $actions := get $cfg "actions" | default dict }}
{{- if not (hasKey $actions "bundle") }}
{{- $_ := set $actions "bundle" (dict "dir" .path "max_bytes" .maxBytes "keep" .keep) }}
{{- end }}
{{- $_ := set $cfg "actions" $actions }}
{{- end }}
{{- end }}
{{- if .Values.fleet.enabled }}
{{- $_ := set $cfg "fleet" (include "leakwatch.fleet.config" . | fromJson) }}
{{- end }}
{{- include "leakwatch.toml.table" (dict "path" "" "table" $cfg) }}
{{ end }}

{{/* ---- Fleet-safe restarts (fleet.enabled): K restart slots as Leases ---- */}}

{{/*
The group: fleet.group, else the release name. Rendering fails unless it is a DNS-1123
label of at most 40 characters (the Lease names are leakwatch-<group>-slot-<i>).
*/}}
{{- define "leakwatch.fleet.group" -}}
{{- $group := .Values.fleet.group | default .Release.Name }}
{{- if not (and (le (len $group) 40) (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $group)) }}
{{- if .Values.fleet.group }}
{{- fail (printf "fleet.group %q is not a DNS-1123 label (lowercase letters, digits and '-', a letter or digit at each end) of at most 40 characters" $group) }}
{{- else }}
{{- fail (printf "fleet.group defaults to the release name %q, which is not a DNS-1123 label (lowercase letters, digits and '-', a letter or digit at each end) of at most 40 characters: set fleet.group" $group) }}
{{- end }}
{{- end }}
{{- $group }}
{{- end }}

{{/*
K, the number of slots: fleet.maxConcurrent as an integer from 1 to 100, or a percentage
"P%" of N (fleet.replicas, else workload.replicas): ceil(N x P / 100), at least 1 and at
most 100 (leakwatch refuses more slots).
*/}}
{{- define "leakwatch.fleet.slots" -}}
{{- $f := .Values.fleet }}
{{- $m := $f.maxConcurrent }}
{{- $bad := printf "fleet.maxConcurrent %v: expected an integer from 1 to 100 or a percentage from \"1%%\" to \"100%%\"" $m }}
{{- if kindIs "string" $m }}
{{- if not (regexMatch "^[0-9]{1,3}%$" $m) }}{{ fail $bad }}{{ end }}
{{- $pct := trimSuffix "%" $m | atoi }}
{{- if or (lt $pct 1) (gt $pct 100) }}{{ fail $bad }}{{ end }}
{{- $n := $f.replicas }}
{{- if kindIs "invalid" $n }}{{ $n = .Values.workload.replicas }}{{ end }}
{{- $n = int64 $n }}
{{- $k := max 1 (div (add (mul $n $pct) 99) 100) }}
{{- if gt $k 100 }}
{{- fail (printf "fleet.maxConcurrent %s of %d replicas is %d slots: at most 100 (leakwatch's limit); use a smaller percentage" $m $n $k) }}
{{- end }}
{{- $k }}
{{- else if kindIs "float64" $m }}
{{- if or (ne (floor $m) $m) (lt $m 1.0) (gt $m 100.0) }}{{ fail $bad }}{{ end }}
{{- int64 $m }}
{{- else if or (kindIs "int" $m) (kindIs "int64" $m) }}
{{- if or (lt (int64 $m) 1) (gt (int64 $m) 100) }}{{ fail $bad }}{{ end }}
{{- int64 $m }}
{{- else }}
{{- fail $bad }}
{{- end }}
{{- end }}

{{/* The Leases' names, as a JSON list. */}}
{{- define "leakwatch.fleet.leaseNames" -}}
{{- $group := include "leakwatch.fleet.group" . }}
{{- $names := list }}
{{- range $i := until (include "leakwatch.fleet.slots" . | atoi) }}
{{- $names = append $names (printf "leakwatch-%s-slot-%d" $group $i) }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* The Leases' leaseDurationSeconds: fleet.leaseDuration ("15s", "1m"), else 15. */}}
{{- define "leakwatch.fleet.leaseSeconds" -}}
{{- with .Values.fleet.leaseDuration }}
{{- if not (regexMatch "^[1-9][0-9]*(s|m)$" .) }}
{{- fail (printf "fleet.leaseDuration %q: expected whole seconds or minutes, like \"15s\" or \"1m\"" .) }}
{{- end }}
{{- $n := regexFind "^[0-9]+" . | atoi }}
{{- if hasSuffix "m" . }}{{ mul $n 60 }}{{ else }}{{ $n }}{{ end }}
{{- else }}15
{{- end }}
{{- end }}

{{/*
The config's [fleet] table, as JSON: group, max_concurrent as the integer K (the number of
Leases, also for a percentage), and the optional keys that are set. Not the identity
($POD_NAME) nor the namespace (the mounted service account's).
*/}}
{{- define "leakwatch.fleet.config" -}}
{{- $fleet := dict "group" (include "leakwatch.fleet.group" .) "max_concurrent" (include "leakwatch.fleet.slots" . | atoi) }}
{{- $keys := dict "leaseDuration" "lease_duration" "renewEvery" "renew_every" "healthyFor" "healthy_for" "maxHold" "max_hold" "maxWait" "max_wait" "restartCost" "restart_cost" "fallbackSpread" "fallback_spread" }}
{{- range $value, $key := $keys }}
{{- with get $.Values.fleet $value }}
{{- $_ := set $fleet $key . }}
{{- end }}
{{- end }}
{{- toJson $fleet }}
{{- end }}

{{/* The ServiceAccount the pod runs as with fleet on: the Role is bound to it. */}}
{{- define "leakwatch.fleet.serviceAccountName" -}}
{{- include "leakwatch.fullname" . }}
{{- end }}

{{/* The Role and RoleBinding's name. */}}
{{- define "leakwatch.fleet.roleName" -}}
{{- printf "%s-fleet" (include "leakwatch.fullname" .) }}
{{- end }}

{{/*
The Leases, the ServiceAccount, the Role (get and update on exactly the Leases) and its
RoleBinding, as YAML documents; nothing with fleet off. templates/fleet.yaml renders them,
in this chart or as a subchart.
*/}}
{{- define "leakwatch.fleet.objects" -}}
{{- if .Values.fleet.enabled }}
{{- $names := include "leakwatch.fleet.leaseNames" . | fromJsonArray }}
{{- $seconds := include "leakwatch.fleet.leaseSeconds" . | atoi }}
{{- range $name := $names }}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "leakwatch.labels" $ | nindent 4 }}
spec:
  leaseDurationSeconds: {{ $seconds }}
{{- end }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "leakwatch.fleet.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "leakwatch.labels" . | nindent 4 }}
---
# Only get and update, only on the slot Leases: create and delete cannot be pinned to names,
# so the chart creates the Leases and leakwatch never needs them.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "leakwatch.fleet.roleName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "leakwatch.labels" . | nindent 4 }}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    resourceNames:
      {{- toYaml $names | nindent 6 }}
    verbs: [get, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "leakwatch.fleet.roleName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "leakwatch.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "leakwatch.fleet.roleName" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "leakwatch.fleet.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- end }}
{{- end }}

{{/* ---- Inject: the sidecar and what the pod needs for it ---- */}}

{{/* The ConfigMap holding the config: render it once in the chart that owns the pod. */}}
{{- define "leakwatch.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "leakwatch.fullname" . }}
  labels:
    {{- include "leakwatch.labels" . | nindent 4 }}
data:
  leakwatch.toml: |
    {{- include "leakwatch.config" . | nindent 4 }}
{{- end }}

{{/* A pod annotation that rolls the pod when the config changes. */}}
{{- define "leakwatch.configChecksum" -}}
checksum/leakwatch-config: {{ include "leakwatch.config" . | sha256sum }}
{{- end }}

{{- define "leakwatch.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
seccompProfile:
  type: RuntimeDefault
{{- if .Values.sidecar.targetOtherUid }}
# A target of another uid: root holding only what reading its /proc needs.
runAsUser: 0
runAsNonRoot: false
capabilities:
  drop: [ALL]
  add: [SYS_PTRACE, DAC_READ_SEARCH]
{{- else }}
runAsNonRoot: true
{{- with .Values.sidecar.runAsUser }}
runAsUser: {{ . }}
{{- end }}
capabilities:
  drop: [ALL]
{{- end }}
{{- end }}

{{/* The leakwatch container, as one item of a container list. */}}
{{- define "leakwatch.sidecar" -}}
- name: leakwatch
  image: {{ include "leakwatch.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if eq .Values.sidecar.mode "native" }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - -c
    - {{ include "leakwatch.configPath" . }}
    - --listen
    - {{ include "leakwatch.listen" . | quote }}
    - --probe-listen
    - {{ include "leakwatch.probeListen" . | quote }}
    - --log-format
    - {{ .Values.sidecar.logFormat }}
  env:
    - name: LEAKWATCH_LOG
      value: {{ .Values.sidecar.logLevel | quote }}
    {{- if eq .Values.sidecar.listen "podIP" }}
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    {{- end }}
    {{- if .Values.fleet.enabled }}
    # The sidecar's identity in the fleet's slot Leases.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- end }}
  ports:
    - name: leakwatch
      containerPort: {{ .Values.sidecar.port }}
      protocol: TCP
    - name: leakwatch-probe
      containerPort: {{ .Values.sidecar.probePort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /livez
      port: {{ .Values.sidecar.probePort }}
    {{- toYaml .Values.sidecar.startupProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /livez
      port: {{ .Values.sidecar.probePort }}
    {{- toYaml .Values.sidecar.livenessProbe | nindent 4 }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "leakwatch.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: leakwatch-config
      mountPath: /etc/leakwatch
      readOnly: true
    {{- if .Values.diagnostics.enabled }}
    - name: leakwatch-bundles
      mountPath: {{ .Values.diagnostics.path }}
    {{- end }}
    {{- with .Values.sidecar.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* The sidecar for `initContainers:` (native mode), else nothing. */}}
{{- define "leakwatch.initContainers" -}}
{{- if eq .Values.sidecar.mode "native" }}
{{- include "leakwatch.sidecar" . }}
{{- end }}
{{- end }}

{{/* The sidecar for `containers:` (classic mode), else nothing. */}}
{{- define "leakwatch.containers" -}}
{{- if eq .Values.sidecar.mode "classic" }}
{{- include "leakwatch.sidecar" . }}
{{- end }}
{{- end }}

{{/*
The pod spec's fields for the sidecar with fleet on (the ServiceAccount bound to the Lease
Role, its token mounted), else nothing.
*/}}
{{- define "leakwatch.podServiceAccount" -}}
{{- if .Values.fleet.enabled -}}
serviceAccountName: {{ include "leakwatch.fleet.serviceAccountName" . }}
automountServiceAccountToken: true
{{- end }}
{{- end }}

{{/* The pod's volumes for the sidecar, as list items. */}}
{{- define "leakwatch.volumes" -}}
- name: leakwatch-config
  configMap:
    name: {{ include "leakwatch.fullname" . }}
{{- if .Values.diagnostics.enabled }}
- name: leakwatch-bundles
  emptyDir:
    sizeLimit: {{ .Values.diagnostics.sizeLimit }}
{{- end }}
{{- end }}

{{/*
The target container's mounts for what it shares with the sidecar (the diagnostics
bundles dir), as list items; empty when there is nothing to share.
*/}}
{{- define "leakwatch.targetVolumeMounts" -}}
{{- if and .Values.diagnostics.enabled .Values.diagnostics.mountInTarget }}
- name: leakwatch-bundles
  mountPath: {{ .Values.diagnostics.path }}
{{- end }}
{{- end }}

{{/* The target container's livenessProbe: leakwatch's /healthz on the probe port, by number. */}}
{{- define "leakwatch.targetLivenessProbe" -}}
httpGet:
  path: {{ .Values.targetProbe.path }}
  port: {{ .Values.sidecar.probePort }}
initialDelaySeconds: {{ .Values.targetProbe.initialDelaySeconds }}
timeoutSeconds: {{ .Values.targetProbe.timeoutSeconds }}
periodSeconds: {{ .Values.targetProbe.periodSeconds }}
failureThreshold: {{ .Values.targetProbe.failureThreshold }}
{{- end }}
