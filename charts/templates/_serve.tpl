{{/*
serveConfigV2, built as data: the app's serve config (files/serve_config.yaml) with the
chart's model, limits and per-deployment overrides applied, emitted with toYaml.
*/}}
{{- define "mnist-serve.serveConfig" -}}
{{- $v := .Values }}
{{- $config := .Files.Get "files/serve_config.yaml" | fromYaml }}
{{- $_ := set $config.http_options "request_timeout_s" $v.serve.requestTimeoutS }}
{{- if $v.grpc.enabled }}
{{- $_ := set $config.grpc_options "port" $v.grpc.port }}
{{- else }}
{{- $_ := unset $config "grpc_options" }}
{{- end }}
{{- $_ := set $config "logging_config" (mergeOverwrite (dict) ($config.logging_config | default dict) (deepCopy $v.serve.logging)) }}
{{- range $app := $config.applications }}
{{- $model := dict "uri" $v.model.uri "version" $v.model.version }}
{{- with $v.model.sha256 }}
{{- $_ := set $model "sha256" . }}
{{- end }}
{{- $_ := set $app.args "model" $model }}
{{- $_ := set $app.args "limits" (mergeOverwrite (dict) $app.args.limits (deepCopy $v.serve.limits)) }}
{{- $_ := set $app.args "topology" $v.serve.topology }}
{{- if eq $v.serve.topology "fused" }}
{{- /* Serve refuses options for deployments an app lacks (mnist_serve.builders.DEPLOYMENTS). */}}
{{- $kept := list }}
{{- range $d := $app.deployments }}
{{- if eq $d.name "Ingress" }}
{{- $kept = append $kept $d }}
{{- end }}
{{- end }}
{{- $_ := set $app "deployments" $kept }}
{{- end }}
{{- range $d := $app.deployments }}
{{- $override := deepCopy (get $v.serve.deployments $d.name | default dict) }}
{{- if $override.autoscaling_config }}
{{- /* Serve refuses num_replicas beside autoscaling_config: the override replaces it. */}}
{{- $_ := unset $d "num_replicas" }}
{{- end }}
{{- with $override.workerGroup }}
{{- $_ := set $override "ray_actor_options" (merge (dict "label_selector" (dict "mnist-serve/pool" .)) ($override.ray_actor_options | default dict)) }}
{{- end }}
{{- $_ := mergeOverwrite $d (omit $override "workerGroup") }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}
