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
# `listen` comes from the command line (sidecar.port, sidecar.listen).
{{- $cfg := deepCopy .Values.config }}
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
{{- include "leakwatch.toml.table" (dict "path" "" "table" $cfg) }}
{{ end }}

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
